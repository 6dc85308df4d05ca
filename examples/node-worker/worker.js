#!/usr/bin/env node
// A schedd worker in Node.js, written against the protocol alone (docs/worker-protocol.md):
// it loads proto/schedd/v1/*.proto at run time, opens WorkerService.Connect on the leader,
// says Hello, heartbeats every Welcome.heartbeat_interval_ms (also when idle), runs each
// firing and completes it with its fence, follows the leader hint on UNAVAILABLE, and on
// SIGTERM/SIGINT drains: a Release with drain=true, then it waits for running handlers.
//
//   npm install
//   source ../../.schedd-dev/env      # SCHEDD_ENDPOINTS, SCHEDD_CA, SCHEDD_CERT, SCHEDD_KEY, token
//   node worker.js --queue default --job hello
//
// Options: --queue Q (repeat; default "default"), --job NAME (repeat: the jobs this worker
// runs; none: any job), --worker-id ID, --concurrency N, --namespace NS.
// Environment: SCHEDD_ENDPOINTS (host:port,...), SCHEDD_CA, SCHEDD_CERT, SCHEDD_KEY (mutual TLS),
// SCHEDD_TOKEN or SCHEDD_TOKEN_FILE (bearer token, optional with a worker certificate),
// SCHEDD_INSECURE=1 (plaintext), SCHEDD_PROTO_DIR (default: ../../proto).
//
// The "handler" prints the firing as one line and succeeds; a payload {"fail": "text"} fails it.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const opts = { queues: [], jobs: [], workerId: '', concurrency: 1, namespace: '' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--queue') { opts.queues.push(v); i++; }
    else if (a === '--job') { opts.jobs.push(v); i++; }
    else if (a === '--worker-id') { opts.workerId = v; i++; }
    else if (a === '--concurrency') { opts.concurrency = parseInt(v, 10); i++; }
    else if (a === '--namespace') { opts.namespace = v; i++; }
    else { console.error(`error: unknown option ${a}`); process.exit(2); }
  }
  if (!opts.queues.length) opts.queues.push('default');
  if (!opts.workerId) opts.workerId = `node-${os.hostname()}-${process.pid}`;
  return opts;
}

function log(event, fields = {}) {
  const kv = Object.entries(fields).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`);
  console.log([`event=${event}`, ...kv].join(' '));
}

function loadApi() {
  const protoDir = process.env.SCHEDD_PROTO_DIR || path.resolve(__dirname, '..', '..', 'proto');
  const def = protoLoader.loadSync(path.join(protoDir, 'schedd', 'v1', 'api.proto'), {
    keepCase: true, // field names as in the .proto: run_id, heartbeat_interval_ms, ...
    longs: String, // uint64/int64 (fence, *_ms) as strings: a JS number loses precision
    enums: String,
    defaults: true,
    oneofs: true, // msg.body names the oneof member that is set
    includeDirs: [protoDir],
  });
  return grpc.loadPackageDefinition(def).schedd.v1;
}

function credentials() {
  if (process.env.SCHEDD_INSECURE === '1') return grpc.credentials.createInsecure();
  const read = (name) => (process.env[name] ? fs.readFileSync(process.env[name]) : null);
  return grpc.credentials.createSsl(read('SCHEDD_CA'), read('SCHEDD_KEY'), read('SCHEDD_CERT'));
}

function token() {
  if (process.env.SCHEDD_TOKEN) return process.env.SCHEDD_TOKEN.trim();
  if (process.env.SCHEDD_TOKEN_FILE) return fs.readFileSync(process.env.SCHEDD_TOKEN_FILE, 'utf8').trim();
  return '';
}

class NodeWorker {
  constructor(api, opts) {
    this.api = api;
    this.opts = opts;
    this.endpoints = (process.env.SCHEDD_ENDPOINTS || '127.0.0.1:50051').split(',').map((s) => s.trim()).filter(Boolean);
    this.next = 0; // index of the endpoint to try next
    this.hint = ''; // the leader's address from the last stream's trailing metadata
    this.held = new Map(); // run_id -> fence (string) of firings running here
    this.unacked = new Map(); // "run_id@fence" -> Completion: resent on every new stream
    this.draining = false;
    this.call = null;
    this.timer = null;
  }

  target() {
    if (this.hint) { const t = this.hint; this.hint = ''; return t; }
    const t = this.endpoints[this.next % this.endpoints.length];
    this.next++;
    return t;
  }

  connect() {
    const target = this.target();
    const client = new this.api.WorkerService(target, credentials());
    const md = new grpc.Metadata();
    const tok = token();
    if (tok) md.set('authorization', `Bearer ${tok}`);
    const call = client.Connect(md);
    this.call = call;
    // 1. Hello first, always: the leases still running re-attach under the same fence.
    call.write({
      hello: {
        worker_id: this.opts.workerId,
        queues: this.opts.queues,
        concurrency: this.opts.concurrency,
        namespace: this.opts.namespace,
        jobs: this.opts.jobs, // empty: any job
        running: [...this.held].map(([run_id, fence]) => ({ run_id, fence })),
      },
    });
    call.on('data', (msg) => this.onMessage(call, msg));
    // 'status' comes once, when the stream has ended (after 'error' for a failed one).
    call.on('status', (st) => {
      // UNAVAILABLE from a follower or a deposed leader names the leader in trailing metadata.
      const hint = st.metadata && st.metadata.get('schedd-leader');
      if (hint && hint.length && hint[0]) this.hint = String(hint[0]);
      this.onClose(call, client);
    });
    call.on('error', (err) => log('disconnected', { target, code: err.code, reason: err.details, leader: this.hint || '-' }));
  }

  onClose(call, client) {
    if (this.call !== call) return;
    clearInterval(this.timer);
    this.call = null;
    client.close();
    if (this.draining && this.held.size === 0 && this.unacked.size === 0) return this.exit();
    setTimeout(() => this.connect(), this.hint ? 100 : 1000);
  }

  onMessage(call, msg) {
    switch (msg.body) {
      case 'welcome': {
        const w = msg.welcome;
        log('connected', { node_id: w.node_id, queues: this.opts.queues.join(','), jobs: this.opts.jobs.join(',') || '*', heartbeat_ms: w.heartbeat_interval_ms });
        for (const l of w.lost) this.held.delete(l.run_id);
        // 2. Heartbeat every interval, leases or not: an idle worker that stays silent is
        // left out of grants after two intervals and its stream is closed later.
        const every = Number(w.heartbeat_interval_ms) || 2000;
        clearInterval(this.timer);
        this.timer = setInterval(() => this.heartbeat(call), every);
        for (const c of this.unacked.values()) call.write({ completions: { completions: [c] } });
        if (this.draining) call.write({ release: { leases: [], reason: 'worker stopping', drain: true } });
        break;
      }
      case 'firings':
        for (const f of msg.firings.firings) this.run(call, f);
        break;
      case 'acks':
        for (const a of msg.acks.acks) {
          // code 0 OK; 10 ABORTED: the fence is stale (the lease was lost), the result discarded.
          // Anything else that is final (a bad request) is dropped too; UNAVAILABLE (14) is
          // retried by the resend on the next stream.
          if (a.code !== 14) this.unacked.delete(`${a.run_id}@${a.fence}`);
          log('completion_acked', { run_id: a.run_id, fence: a.fence, code: a.code, message: a.message });
        }
        this.maybeExit();
        break;
      case 'lost':
        for (const l of msg.lost.leases) {
          this.held.delete(l.run_id);
          log('lease_lost', { run_id: l.run_id, fence: l.fence, reason: msg.lost.reason });
        }
        break;
      default:
        break; // a message of a newer server: ignore it
    }
  }

  heartbeat(call) {
    call.write({ heartbeat: { leases: [...this.held].map(([run_id, fence]) => ({ run_id, fence })) } });
  }

  run(call, f) {
    if (this.draining) {
      // Not started: give it back at once, no attempt used.
      call.write({ release: { leases: [{ run_id: f.run_id, fence: f.fence }], reason: 'worker stopping', drain: true } });
      return;
    }
    this.held.set(f.run_id, f.fence);
    log('firing', { run_id: f.run_id, job: f.job, fence: f.fence, attempt: f.attempt, payload: f.payload });
    let outcome = 'OUTCOME_SUCCEEDED';
    let error = '';
    try {
      const payload = f.payload ? JSON.parse(f.payload) : {};
      if (payload && payload.fail) { outcome = 'OUTCOME_FAILED'; error = String(payload.fail); }
    } catch (e) {
      outcome = 'OUTCOME_FAILED';
      error = `bad payload: ${e.message}`;
    }
    // A real handler does its work here (asynchronously); it completes with the same fence.
    setImmediate(() => {
      if (this.held.get(f.run_id) !== f.fence) return; // lost meanwhile: send nothing
      this.held.delete(f.run_id);
      const c = { run_id: f.run_id, fence: f.fence, outcome, error };
      this.unacked.set(`${f.run_id}@${f.fence}`, c);
      if (this.call) this.call.write({ completions: { completions: [c] } });
    });
  }

  stop() {
    if (this.draining) return this.exit();
    this.draining = true;
    log('draining', { running: this.held.size });
    if (this.call) this.call.write({ release: { leases: [], reason: 'worker stopping', drain: true } });
    this.maybeExit();
    setTimeout(() => this.exit(), 10000).unref();
  }

  maybeExit() {
    if (this.draining && this.held.size === 0 && this.unacked.size === 0) this.exit();
  }

  exit() {
    clearInterval(this.timer);
    if (this.call) this.call.end();
    log('stopped');
    process.exit(0);
  }
}

const worker = new NodeWorker(loadApi(), parseArgs(process.argv.slice(2)));
process.on('SIGTERM', () => worker.stop());
process.on('SIGINT', () => worker.stop());
worker.connect();
