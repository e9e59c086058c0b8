"""Checks a raw HTTP request recorded off the wire with Alibaba's own signing code.

Usage: verify_request.py SECRET < raw-request
Prints JSON: {"method", "path", "params" (query and form body, minus Signature),
"content_type", "signature", "expected"}; the caller compares the last two.
"""
import json
import sys
from urllib.parse import parse_qsl, urlsplit

from alibabacloud_openapi_util.client import Client

raw = sys.stdin.buffer.read()
head, _, body = raw.partition(b"\r\n\r\n")
lines = head.decode("latin-1").split("\r\n")
method, target, _version = lines[0].split(" ", 2)
headers = {}
for line in lines[1:]:
    name, _, value = line.partition(":")
    headers[name.strip().lower()] = value.strip()
url = urlsplit(target)
params = dict(parse_qsl(url.query, keep_blank_values=True, strict_parsing=False))
if body:
    params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
signature = params.pop("Signature", None)
expected = Client.get_rpcsignature(params, method, sys.argv[1])
json.dump({"method": method, "path": url.path, "params": params,
           "content_type": headers.get("content-type"), "signature": signature,
           "expected": expected}, sys.stdout)
