#!/usr/bin/env node
// Publishes jobfleet jobs straight to RabbitMQ (SPEC §3) and prints their ids.
//
//   node producer.js --group default --function wordcount --args '{"text": "a b a"}'
//   node producer.js --function echo --args '[1, 2]' --count 10 --wait-workers 30
//
// Each job goes to exchange NS.jobs with routing key = group, as a msgpack map with named
// fields, persistent, with message_id = id, on a confirm channel with mandatory set: when
// this exits 0 the broker holds every job. Read the results with subscriber.js (start it
// first) or `jobfleet watch`.
//
// Environment: JOBFLEET_NAMESPACE (default jobfleet), JOBFLEET_AMQP_URL (default
// amqp://guest:guest@127.0.0.1:5672/%2f).
// Exit status: 0 published, 2 unroutable (no queue for the group: no worker or master of
// it has ever started), 3 the broker cannot be reached, 64 bad command line.
'use strict';

const { parseArgs } = require('node:util');
const wire = require('./wire');

function usage(message) {
  process.stderr.write(`producer: ${message}\nusage: node producer.js [--group G] --function F [--args JSON] [--id ID] [--timeout-ms N] [--count N] [--wait-workers SECONDS]\n`);
  process.exit(64);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        group: { type: 'string', default: 'default' },
        function: { type: 'string' },
        args: { type: 'string', default: 'null' },
        id: { type: 'string' },
        'timeout-ms': { type: 'string' },
        count: { type: 'string', default: '1' },
        'wait-workers': { type: 'string', default: '0' },
      },
    }).values;
  } catch (e) {
    usage(e.message);
  }
  if (!parsed.function) usage('--function is required');
  let args;
  try {
    args = JSON.parse(parsed.args);
  } catch (e) {
    usage(`--args is not valid JSON: ${e.message}`);
  }
  const count = Number(parsed.count);
  if (!Number.isInteger(count) || count < 1) usage('--count must be a positive integer');
  if (parsed.id && count > 1) usage('--id names one job; drop --count');
  const timeoutMs = parsed['timeout-ms'] === undefined ? undefined : Number(parsed['timeout-ms']);
  if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1)) usage('--timeout-ms must be a positive integer');
  const waitWorkers = Number(parsed['wait-workers']);
  if (!(waitWorkers >= 0)) usage('--wait-workers must be a number of seconds');
  return { group: parsed.group, fn: parsed.function, args, id: parsed.id, timeoutMs, count, waitWorkers };
}

/** Waits up to `seconds` for a consumer on the group's queue (a running worker). */
async function waitForWorker(connection, ns, group, seconds) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    // A passive declare of a missing queue closes its channel: use a throwaway one.
    const probe = await connection.createChannel();
    probe.on('error', () => {});
    try {
      const queue = await probe.checkQueue(`${ns}.group.${group}`);
      await probe.close();
      if (queue.consumerCount > 0) return true;
    } catch {
      // Not declared yet.
    }
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function main() {
  const opts = options();
  const ns = wire.namespace();
  const connection = await wire.connect('producer');
  if (connection === null) return 3;
  try {
    if (opts.waitWorkers > 0 && !(await waitForWorker(connection, ns, opts.group, opts.waitWorkers))) {
      process.stderr.write(`producer: warning: no worker consumes ${ns}.group.${opts.group} yet; publishing anyway\n`);
    }
    const channel = await connection.createConfirmChannel();
    await wire.declareExchanges(channel, ns);
    // mandatory: a job no queue takes comes back (basic.return) before its confirm.
    const returned = new Set();
    channel.on('return', (message) => returned.add(message.properties.messageId));

    const jobs = [];
    for (let i = 0; i < opts.count; i++) {
      const job = wire.newJob(opts.group, opts.fn, opts.args, { id: opts.id, timeoutMs: opts.timeoutMs });
      channel.publish(`${ns}.jobs`, job.group, wire.encodeJob(job), wire.jobOptions(job));
      jobs.push(job);
    }
    // Rejects if the broker nacks any of them.
    await channel.waitForConfirms();
    const lost = jobs.filter((job) => returned.has(job.id));
    if (lost.length > 0) {
      process.stderr.write(`producer: ${lost.length} job(s) unroutable: no queue ${ns}.group.${opts.group} (start a worker or master of that group first)\n`);
      return 2;
    }
    for (const job of jobs) process.stdout.write(`${job.id}\n`);
    await channel.close();
    return 0;
  } finally {
    await connection.close().catch(() => {});
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`producer: ${e.message}\n`);
    process.exit(3);
  },
);
