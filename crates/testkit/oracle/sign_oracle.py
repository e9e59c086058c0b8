"""Signature oracle: Alibaba's own code computes the V2 RPC signature.

Reads one JSON object per line on stdin: {"method": "POST", "params": {...}, "secret": "..."}
and writes one line per request: the signature computed by
alibabacloud_openapi_util.client.Client.get_rpcsignature (PyPI alibabacloud-openapi-util).
"""
import json
import sys

from alibabacloud_openapi_util.client import Client

for line in sys.stdin:
    req = json.loads(line)
    sig = Client.get_rpcsignature(req["params"], req["method"], req["secret"])
    sys.stdout.write(sig + "\n")
    sys.stdout.flush()
