// Drives fnf-emulator with Alibaba's official Node client (@alicloud/fnf-2019-03-15 on
// pop-core, which signs every call itself and sends its parameters in the POST body, or in
// the query string for the actions it sends as GET: DescribeExecution, ListExecutions), unchanged.
// Usage: node conformance.js URL ACCESS_KEY_ID ACCESS_KEY_SECRET   (NODE_PATH = its node_modules)
// Prints one JSON object: scenario name -> the SDK's answer, or the error code it raised.
'use strict';
const Fnf = require('@alicloud/fnf-2019-03-15');

const [url, ak, sk] = process.argv.slice(2);
const flow = 'conf_node';
const client = (id, secret, securityToken) =>
  new Fnf({ accessKeyId: id, accessKeySecret: secret, securityToken, endpoint: url });

async function outcome(fn) {
  try {
    return { ok: await fn() };
  } catch (e) {
    // pop-core 1.8 keeps the HTTP response on the error (e.entry.response), undocumented.
    const response = e.entry && e.entry.response;
    return { code: e.code || null,
             status: e.statusCode || (response && response.statusCode) || (e.data && e.data.httpCode) || null,
             request_id: e.data && e.data.RequestId, error: String(e.message).slice(0, 200) };
  }
}

async function main() {
  const c = client(ak, sk);
  const out = {};
  out.create_flow = await outcome(() => c.createFlow({ Name: flow, Definition: 'Type: StateMachine\nName: x', Description: 'conformance', Type: 'FDL' }));
  out.start = await outcome(() => c.startExecution({ FlowName: flow, ExecutionName: 'e1', Input: '{"a": "b c"}' }));
  out.describe = await outcome(() => c.describeExecution({ FlowName: flow, ExecutionName: 'e1' }));
  out.stop = await outcome(() => c.stopExecution({ FlowName: flow, ExecutionName: 'e1', Error: 'Aborted', Cause: 'stopped by conformance * ~ +' }));
  out.stop_again = await outcome(() => c.stopExecution({ FlowName: flow, ExecutionName: 'e1' }));
  out.stop_unknown_flow = await outcome(() => c.stopExecution({ FlowName: 'absent', ExecutionName: 'e1' }));
  for (let i = 2; i <= 5; i++) await c.startExecution({ FlowName: flow, ExecutionName: 'e' + i });
  const names = [];
  let token;
  for (let i = 0; i < 10; i++) {
    const params = { FlowName: flow, Limit: 2 };
    if (token) params.NextToken = token;
    const page = await c.listExecutions(params);
    for (const e of page.Executions || []) names.push(e.Name);
    token = page.NextToken;
    if (!token) break;
  }
  out.list_paged = { ok: names };
  out.wrong_secret = await outcome(() => client(ak, 'wrong-secret').describeExecution({ FlowName: flow, ExecutionName: 'e1' }));
  out.unknown_key = await outcome(() => client('unknown-key', sk).describeExecution({ FlowName: flow, ExecutionName: 'e1' }));

  // A stale clock: pop-core reads `new Date()`; make the clock 20 minutes behind for one call.
  const RealDate = Date;
  global.Date = class extends RealDate {
    constructor(...a) { if (a.length === 0) super(RealDate.now() - 20 * 60 * 1000); else super(...a); }
  };
  out.stale_timestamp = await outcome(() => c.describeExecution({ FlowName: flow, ExecutionName: 'e1' }));
  global.Date = RealDate;

  // STS keys from the STS stand-in (AssumeRoleWithOIDC is unsigned).
  const form = new URLSearchParams({ RoleArn: 'acs:ram::1234567890:role/conf', OIDCProviderArn: 'acs:ram::1234567890:oidc-provider/ack-rrsa-c1',
    OIDCToken: 'h.p.s', RoleSessionName: 'conf', DurationSeconds: '900' });
  const q = new URLSearchParams({ Action: 'AssumeRoleWithOIDC', Version: '2015-04-01', Format: 'JSON', Timestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') });
  const resp = await fetch(url + '/?' + q, { method: 'POST', body: form });
  const sts = (await resp.json()).Credentials;
  const s = client(sts.AccessKeyId, sts.AccessKeySecret, sts.SecurityToken);
  out.sts_describe = await outcome(() => s.describeExecution({ FlowName: flow, ExecutionName: 'e2' }));
  out.sts_stop = await outcome(() => s.stopExecution({ FlowName: flow, ExecutionName: 'e2' }));

  // Like outcome(), but waits out ResourceThrottled (ListExecutions' bucket holds 10).
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function patient(fn) {
    let r;
    for (let i = 0; i < 30; i++) {
      r = await outcome(fn);
      if (r.code !== 'ResourceThrottled') return r;
      await sleep(600);
    }
    return r;
  }
  async function listAll(params) {
    const names = [];
    let token;
    let pages = 0;
    for (;;) {
      const p = { ...params, FlowName: flow };
      if (token) p.NextToken = token;
      const r = await patient(() => c.listExecutions(p));
      if (!('ok' in r)) return r;
      pages += 1;
      for (const e of r.ok.Executions || []) names.push(e.Name);
      token = r.ok.NextToken;
      if (!token) return { ok: names, pages };
    }
  }

  // ListExecutions' filters, with executions started on both sides of a moment.
  const pname = (i) => 'p' + String(i).padStart(3, '0');
  for (let i = 0; i < 75; i++) await patient(() => c.startExecution({ FlowName: flow, ExecutionName: pname(i) }));
  await sleep(10);
  const mid = new Date().toISOString();
  await sleep(10);
  for (let i = 75; i < 150; i++) await patient(() => c.startExecution({ FlowName: flow, ExecutionName: pname(i) }));
  out.list_prefix = await listAll({ ExecutionNamePrefix: 'p', Limit: 99 });
  out.list_after = await listAll({ ExecutionNamePrefix: 'p', Limit: 99, StartedTimeBegin: mid });
  out.list_before = await listAll({ ExecutionNamePrefix: 'p', Limit: 99, StartedTimeEnd: mid });
  out.list_stopped = await listAll({ Status: 'Stopped' });
  out.list_limit_100 = await patient(() => c.listExecutions({ FlowName: flow, ExecutionNamePrefix: 'p', Limit: 100 }));
  out.list_limit_101 = await patient(() => c.listExecutions({ FlowName: flow, Limit: 101 }));
  out.list_bad_time = await patient(() => c.listExecutions({ FlowName: flow, StartedTimeBegin: 'yesterday' }));
  out.list_unknown_flow = await patient(() => c.listExecutions({ FlowName: 'absent' }));

  let throttled = { code: null };
  for (let i = 0; i < 40; i++) {
    const r = await outcome(() => c.stopExecution({ FlowName: flow, ExecutionName: 'absent_' + i }));
    if (r.code === 'ResourceThrottled') { throttled = r; break; }
  }
  out.throttled = throttled;
  process.stdout.write(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
