"""Alibaba's official Python SDKs doing the quota scenario's stops, as a user's script would.

Usage: peers.py legacy|tea16 URL ACCESS_KEY_ID SECRET PREFIX N
Stops executions PREFIX-0 .. PREFIX-(N-1) of flow f. Neither SDK retries ResourceThrottled
for fnf by itself (the legacy SDK's auto-retry covers other products' APIs; Tea's is off by
default), so the loop does what a careful script does: on 429 or 5xx, wait 100 ms doubling
to 1 s and try again. Prints JSON: wall seconds, calls, throttled answers.
"""
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

mode, url, ak, sk, prefix, n = sys.argv[1:7]
n = int(n)
host = url.split("://", 1)[1]
calls = throttled = 0
lock = threading.Lock()


def legacy_stop(client, name):
    from aliyunsdkfnf.request.v20190315.StopExecutionRequest import StopExecutionRequest
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    r = StopExecutionRequest()
    r.set_FlowName("f")
    r.set_ExecutionName(name)
    r.set_endpoint(host)
    r.set_protocol_type("http")
    try:
        client.do_action_with_exception(r)
        return None
    except ServerException as e:
        return e.get_error_code(), e.get_http_status()


def tea_stop(client, name):
    from alibabacloud_fnf20190315 import models
    try:
        client.stop_execution(models.StopExecutionRequest(flow_name="f", execution_name=name))
        return None
    except Exception as e:  # ClientException / ServerException carry code and status_code
        return getattr(e, "code", None), getattr(e, "status_code", None)


def with_retry(stop, client, name):
    global calls, throttled
    delay = 0.1
    while True:
        err = stop(client, name)
        with lock:
            calls += 1
            if err and err[0] == "ResourceThrottled":
                throttled += 1
        if err is None:
            return
        if err[0] != "ResourceThrottled" and not (err[1] or 0) >= 500:
            raise SystemExit("unexpected error %r for %s" % (err, name))
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


names = ["%s-%d" % (prefix, i) for i in range(n)]
if mode == "legacy":
    from aliyunsdkcore.client import AcsClient
    client = AcsClient(ak, sk, "cn-hangzhou")  # default auto_retry=True
    t0 = time.monotonic()
    for name in names:
        with_retry(legacy_stop, client, name)
else:
    from alibabacloud_fnf20190315.client import Client
    from alibabacloud_tea_openapi.utils_models import Config
    client = Client(Config(access_key_id=ak, access_key_secret=sk, region_id="cn-hangzhou", endpoint=host, protocol="http"))
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda name: with_retry(tea_stop, client, name), names))
wall = time.monotonic() - t0
json.dump({"wall": wall, "calls": calls, "throttled": throttled}, sys.stdout)
