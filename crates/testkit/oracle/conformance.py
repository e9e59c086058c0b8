"""Drives fnf-emulator with Alibaba's official Python clients, unchanged.

Usage: conformance.py tea|legacy URL ACCESS_KEY_ID ACCESS_KEY_SECRET
Prints one JSON object: scenario name -> what the SDK returned, or the error code it raised.
Each scenario runs even if an earlier one failed; the Rust test asserts on the results.
"""
import json
import sys
import time
import urllib.parse
import urllib.request

kind, url, ak, sk = sys.argv[1:5]
host = urllib.parse.urlsplit(url).netloc
flow = "conf_" + kind


def tea_client(key_id, secret, token=None):
    from alibabacloud_fnf20190315.client import Client
    from alibabacloud_tea_openapi.utils_models import Config
    return Client(Config(access_key_id=key_id, access_key_secret=secret, security_token=token,
                         region_id="cn-hangzhou", endpoint=host, protocol="http"))


def legacy_client(key_id, secret, token=None):
    from aliyunsdkcore.client import AcsClient
    if token:
        from aliyunsdkcore.auth.credentials import StsTokenCredential
        return AcsClient(region_id="cn-hangzhou", credential=StsTokenCredential(key_id, secret, token), auto_retry=False)
    return AcsClient(key_id, secret, "cn-hangzhou", auto_retry=False)


def call(client, action, **params):
    """One action through the SDK; returns the response body as a dict."""
    if kind == "tea":
        from alibabacloud_fnf20190315 import models
        snake = "".join("_" + c.lower() if c.isupper() else c for c in action).lstrip("_")
        request = getattr(models, action + "Request")(**{
            "".join("_" + c.lower() if c.isupper() else c for c in k).lstrip("_"): v for k, v in params.items()})
        return getattr(client, snake)(request).body.to_map()
    module = __import__("aliyunsdkfnf.request.v20190315." + action + "Request", fromlist=["x"])
    request = getattr(module, action + "Request")()
    for k, v in params.items():
        getattr(request, "set_" + k)(v)
    request.set_endpoint(host)
    request.set_protocol_type("http")
    return json.loads(client.do_action_with_exception(request))


def outcome(fn):
    try:
        return {"ok": fn()}
    except Exception as e:  # the SDK's own exception types; report what they carry
        if kind == "tea":
            return {"code": getattr(e, "code", None), "status": getattr(e, "status_code", None),
                    "request_id": getattr(e, "request_id", None), "type": type(e).__name__}
        from aliyunsdkcore.acs_exception.exceptions import ServerException
        if isinstance(e, ServerException):
            return {"code": e.get_error_code(), "status": e.get_http_status(),
                    "request_id": e.get_request_id(), "type": type(e).__name__}
        return {"code": None, "error": repr(e), "type": type(e).__name__}


make = tea_client if kind == "tea" else legacy_client
c = make(ak, sk)
out = {}
out["create_flow"] = outcome(lambda: call(c, "CreateFlow", Name=flow, Definition="Type: StateMachine\nName: x",
                                          Description="conformance", Type="FDL"))
out["start"] = outcome(lambda: call(c, "StartExecution", FlowName=flow, ExecutionName="e1", Input='{"a": "b c"}'))
out["describe"] = outcome(lambda: call(c, "DescribeExecution", FlowName=flow, ExecutionName="e1"))
out["stop"] = outcome(lambda: call(c, "StopExecution", FlowName=flow, ExecutionName="e1",
                                   Error="Aborted", Cause="stopped by conformance * ~ +"))
out["stop_again"] = outcome(lambda: call(c, "StopExecution", FlowName=flow, ExecutionName="e1"))
out["stop_unknown_flow"] = outcome(lambda: call(c, "StopExecution", FlowName="absent", ExecutionName="e1"))
for i in range(2, 6):
    call(c, "StartExecution", FlowName=flow, ExecutionName="e%d" % i)
names, token = [], None
for _ in range(10):
    params = {"FlowName": flow, "Limit": 2}
    if token:
        params["NextToken"] = token
    page = call(c, "ListExecutions", **params)
    names += [e["Name"] for e in page.get("Executions", [])]
    token = page.get("NextToken")
    if not token:
        break
out["list_paged"] = {"ok": names}
out["wrong_secret"] = outcome(lambda: call(make(ak, "wrong-secret"), "DescribeExecution", FlowName=flow, ExecutionName="e1"))
out["unknown_key"] = outcome(lambda: call(make("unknown-key", sk), "DescribeExecution", FlowName=flow, ExecutionName="e1"))

# A stale clock: the SDK's own timestamp function, 20 minutes behind.
stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1200))
if kind == "tea":
    from alibabacloud_tea_openapi.utils import Utils
    saved = Utils.get_timestamp
    Utils.get_timestamp = staticmethod(lambda: stale)
    out["stale_timestamp"] = outcome(lambda: call(c, "DescribeExecution", FlowName=flow, ExecutionName="e1"))
    Utils.get_timestamp = saved
else:
    from aliyunsdkcore.utils import parameter_helper
    saved = parameter_helper.get_iso_8061_date
    parameter_helper.get_iso_8061_date = lambda: stale
    out["stale_timestamp"] = outcome(lambda: call(c, "DescribeExecution", FlowName=flow, ExecutionName="e1"))
    parameter_helper.get_iso_8061_date = saved

# STS keys from the STS stand-in (AssumeRoleWithOIDC is unsigned).
form = urllib.parse.urlencode({"RoleArn": "acs:ram::1234567890:role/conf", "OIDCProviderArn":
                               "acs:ram::1234567890:oidc-provider/ack-rrsa-c1", "OIDCToken": "h.p.s",
                               "RoleSessionName": "conf", "DurationSeconds": "900"}).encode()
query = urllib.parse.urlencode({"Action": "AssumeRoleWithOIDC", "Version": "2015-04-01", "Format": "JSON",
                                "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
sts = json.load(urllib.request.urlopen(urllib.request.Request(url + "/?" + query, data=form)))["Credentials"]
s = make(sts["AccessKeyId"], sts["AccessKeySecret"], sts["SecurityToken"])
out["sts_describe"] = outcome(lambda: call(s, "DescribeExecution", FlowName=flow, ExecutionName="e2"))
out["sts_stop"] = outcome(lambda: call(s, "StopExecution", FlowName=flow, ExecutionName="e2"))



def patient(fn):
    """Like outcome(), but waits out ResourceThrottled (ListExecutions' bucket holds 10)."""
    for _ in range(30):
        r = outcome(fn)
        if r.get("code") != "ResourceThrottled":
            return r
        time.sleep(0.6)
    return r


def list_all(**params):
    names, token, pages = [], None, 0
    while True:
        p = dict(params, FlowName=flow)
        if token:
            p["NextToken"] = token
        r = patient(lambda: call(c, "ListExecutions", **p))
        if "ok" not in r:
            return r
        pages += 1
        names += [e["Name"] for e in r["ok"].get("Executions", [])]
        token = r["ok"].get("NextToken")
        if not token:
            return {"ok": names, "pages": pages}


# ListExecutions' filters, with executions started on both sides of a moment.
for i in range(75):
    patient(lambda: call(c, "StartExecution", FlowName=flow, ExecutionName="p%03d" % i))
time.sleep(0.01)
mid = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time())) + "." + ("%.3f" % (time.time() % 1))[2:] + "Z"
time.sleep(0.01)
for i in range(75, 150):
    patient(lambda: call(c, "StartExecution", FlowName=flow, ExecutionName="p%03d" % i))
out["list_prefix"] = list_all(ExecutionNamePrefix="p", Limit=99)
out["list_after"] = list_all(ExecutionNamePrefix="p", Limit=99, StartedTimeBegin=mid)
out["list_before"] = list_all(ExecutionNamePrefix="p", Limit=99, StartedTimeEnd=mid)
out["list_stopped"] = list_all(Status="Stopped")
out["list_limit_100"] = patient(lambda: call(c, "ListExecutions", FlowName=flow, ExecutionNamePrefix="p", Limit=100))
out["list_limit_101"] = patient(lambda: call(c, "ListExecutions", FlowName=flow, Limit=101))
out["list_bad_time"] = patient(lambda: call(c, "ListExecutions", FlowName=flow, StartedTimeBegin="yesterday"))
out["list_unknown_flow"] = patient(lambda: call(c, "ListExecutions", FlowName="absent"))

# Throttling: StopExecution's bucket holds 10; keep stopping until the SDK reports it.
throttled = None
for i in range(40):
    r = outcome(lambda: call(c, "StopExecution", FlowName=flow, ExecutionName="absent_%d" % i))
    if r.get("code") == "ResourceThrottled":
        throttled = r
        break
out["throttled"] = throttled or {"code": None}
json.dump(out, sys.stdout)
