#!/usr/bin/env node
// Prints jobfleet results as they arrive: binds its own exclusive queue to NS.results
// (a topic exchange; routing key <group>.<function>.<status>) with a pattern.
//
//   node subscriber.js                     # every result, until Ctrl-C
//   node subscriber.js 'etl.#' --count 5   # five results of group etl, then exit
//   node subscriber.js '*.*.failed' --json # failures, one JSON object per line
//
// Output: one line per result, `<id> <status> <result or error as JSON>` (or the whole
// result with --json). A duplicate result (possible after a worker crash) is printed once.
// Once subscribed it says so on stderr: results published from then on are not missed.
// Environment: JOBFLEET_NAMESPACE, JOBFLEET_AMQP_URL as for producer.js.
// Exit status: 0 done (count reached or Ctrl-C), 1 timeout before --count results,
// 3 the broker cannot be reached, 64 bad command line.
'use strict';

const { parseArgs } = require('node:util');
const wire = require('./wire');

function usage(message) {
  process.stderr.write(`subscriber: ${message}\nusage: node subscriber.js [PATTERN] [--count N] [--timeout SECONDS] [--json]\n`);
  process.exit(64);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        count: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    usage(e.message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1) usage('one pattern at most');
  const count = values.count === undefined ? Infinity : Number(values.count);
  if (count !== Infinity && (!Number.isInteger(count) || count < 1)) usage('--count must be a positive integer');
  const timeout = values.timeout === undefined ? Infinity : Number(values.timeout);
  if (!(timeout > 0)) usage('--timeout must be a positive number of seconds');
  return { pattern: positionals[0] || '#', count, timeout, json: values.json };
}

function line(result, json) {
  if (json) return JSON.stringify(result);
  const outcome = result.status === 'finished' ? result.result : result.error;
  return `${result.id} ${result.status} ${JSON.stringify(outcome === undefined ? null : outcome)}`;
}

async function main() {
  const opts = options();
  const ns = wire.namespace();
  const connection = await wire.connect('subscriber');
  if (connection === null) return 3;
  const channel = await connection.createChannel();
  await wire.declareExchanges(channel, ns);
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, `${ns}.results`, opts.pattern);
  await channel.prefetch(100);

  return new Promise((resolve) => {
    const seen = new Set();
    let printed = 0;
    let done = false;
    const finish = (code) => {
      if (done) return;
      done = true;
      connection.close().catch(() => {}).finally(() => resolve(code));
    };
    if (opts.timeout !== Infinity) {
      setTimeout(() => {
        process.stderr.write(`subscriber: timed out after ${opts.timeout}s with ${printed} of ${opts.count} results\n`);
        finish(1);
      }, opts.timeout * 1000).unref();
    }
    process.on('SIGINT', () => finish(0));
    process.on('SIGTERM', () => finish(0));
    connection.on('error', (e) => {
      process.stderr.write(`subscriber: connection lost: ${e.message}\n`);
      finish(3);
    });

    channel
      .consume(queue, (message) => {
        if (message === null || done) return;
        channel.ack(message);
        let result;
        try {
          result = wire.decodeResult(message);
        } catch (e) {
          process.stderr.write(`subscriber: skipped an undecodable result: ${e.message}\n`);
          return;
        }
        if (seen.has(result.id)) return;
        seen.add(result.id);
        // Duplicates follow their original closely: remembering the last 10000 ids is enough.
        if (seen.size > 10000) seen.delete(seen.values().next().value);
        process.stdout.write(`${line(result, opts.json)}\n`);
        printed += 1;
        if (printed >= opts.count) finish(0);
      })
      .then(() => process.stderr.write(`subscribed to ${ns}.results with ${JSON.stringify(opts.pattern)}\n`));
  });
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`subscriber: ${e.message}\n`);
    process.exit(3);
  },
);
