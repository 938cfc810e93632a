// The jobfleet wire protocol (SPEC §3) for Node, with amqplib and @msgpack/msgpack only.
// Written from the protocol, not from the Rust code: what any foreign service needs to
// publish jobs to a fleet and read its results.
'use strict';

const crypto = require('node:crypto');
const amqp = require('amqplib');
const { encode, decode } = require('@msgpack/msgpack');

const DEFAULT_NAMESPACE = 'jobfleet';
const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672/%2f';
const MSGPACK = 'application/msgpack';

/** The namespace from JOBFLEET_NAMESPACE (default `jobfleet`). */
function namespace() {
  return process.env.JOBFLEET_NAMESPACE || DEFAULT_NAMESPACE;
}

/** The broker URL from JOBFLEET_AMQP_URL. */
function amqpUrl() {
  return process.env.JOBFLEET_AMQP_URL || DEFAULT_AMQP_URL;
}

/** The URL (or each URL of a list) with its password hidden, for messages. */
function redact(url) {
  return url.replace(/\/\/([^:/@,]+):[^@,]*@/g, '//$1:***@');
}

/**
 * Connects to the broker at JOBFLEET_AMQP_URL: one URL, or the comma-separated nodes of a
 * RabbitMQ cluster (SPEC §12), tried in turn from a random one so clients spread. When
 * none answers, says why on stderr as `program` (the password hidden) and resolves to
 * null: the caller exits 3.
 */
async function connect(program) {
  const nodes = amqpUrl().split(',').map((node) => node.trim());
  const start = crypto.randomInt(nodes.length);
  for (const url of [...nodes.slice(start), ...nodes.slice(0, start)]) {
    try {
      return await amqp.connect(url);
    } catch (e) {
      process.stderr.write(`${program}: cannot connect to RabbitMQ at ${redact(url)}: ${e.message}\n`);
    }
  }
  return null;
}

/**
 * Declares the fleet's exchanges as the fleet does (all durable), so a producer or a
 * subscriber may start before any worker. Group queues are the workers' to declare.
 */
async function declareExchanges(channel, ns) {
  await channel.assertExchange(`${ns}.jobs`, 'direct', { durable: true });
  await channel.assertExchange(`${ns}.results`, 'topic', { durable: true });
  await channel.assertExchange(`${ns}.control`, 'fanout', { durable: true });
  await channel.assertExchange(`${ns}.dead`, 'fanout', { durable: true });
}

/** A job message: a map with named fields. */
function newJob(group, fn, args, { id, timeoutMs } = {}) {
  const job = {
    id: id || `node-${crypto.randomUUID().replace(/-/g, '')}`,
    group,
    function: fn,
    args: args === undefined ? null : args,
    submitted_at: Date.now(),
  };
  if (timeoutMs !== undefined) job.timeout_ms = timeoutMs;
  return job;
}

/** Publish options of a job: persistent, msgpack, message_id = id, mandatory. */
function jobOptions(job) {
  return {
    persistent: true,
    contentType: MSGPACK,
    messageId: job.id,
    timestamp: Math.floor(job.submitted_at / 1000),
    mandatory: true,
  };
}

/** Encodes a job for NS.jobs. */
function encodeJob(job) {
  return Buffer.from(encode(job));
}

/** Decodes a result message by its content type (msgpack, or JSON). */
function decodeResult(message) {
  if (message.properties.contentType === 'application/json') {
    return JSON.parse(message.content.toString('utf8'));
  }
  return decode(message.content);
}

module.exports = { namespace, amqpUrl, redact, connect, declareExchanges, newJob, jobOptions, encodeJob, decodeResult };
