// Snippets of one request, all derived from the same params tree and the same encoder as the request the
// page sends: curl in Stripe's style, stripe-python and stripe-node pointed at this server, and the raw
// wire request.

import { encodeForm, encodePair, formPairs } from './encode.js';

// Resources of the official SDKs (their service names); a path made only of these maps to an SDK method,
// anything else (an extension such as /history, the operations endpoints) to the SDK's raw request.
const SDK_RESOURCES = new Set(['customers', 'balance_transactions', 'events', 'webhook_endpoints']);

export function maskKey(key) {
  if (!key) return 'sk_test_…';
  return key.length > 12 ? `${key.slice(0, 8)}…${key.slice(-4)}` : '…';
}

const shellQuote = (text) => (/^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`);

export function curl(request) {
  const lines = [];
  const pairs = request.bodyPairs.length ? request.bodyPairs : request.queryPairs;
  const get = !request.bodyPairs.length && request.queryPairs.length;
  let first = 'curl';
  if (get) first += ' -G';
  if (request.method !== 'GET' && !(request.method === 'POST' && request.bodyPairs.length)) first += ` -X ${request.method}`;
  const url = request.bodyPairs.length && request.queryPairs.length ? request.fetchUrl : request.url;
  lines.push(`${first} ${shellQuote(url)}`);
  if (request.key !== undefined) lines.push(`  -u ${shellQuote(`${request.key}:`)}`);
  if (request.idempotencyKey) lines.push(`  -H ${shellQuote(`Idempotency-Key: ${request.idempotencyKey}`)}`);
  // Always -d with the encoder's own percent-encoding: curl sends -d text as is, so the body is byte for
  // byte what the page sends (curl's --data-urlencode would turn spaces into '+').
  for (const pair of pairs) lines.push(`  -d ${shellQuote(encodePair(pair))}`);
  return lines.join(' \\\n');
}

function sdkCall(request) {
  const segments = request.pathTemplate.split('/').filter(Boolean);
  if (segments[0] !== 'v1') return undefined;
  const resources = [];
  const ids = [];
  let verb;
  const rest = segments.slice(1);
  for (let i = 0; i < rest.length; i += 1) {
    const part = rest[i];
    if (part.startsWith('{')) {
      ids.push(part.slice(1, -1));
    } else if (part === 'search' && i === rest.length - 1 && resources.length) {
      verb = 'search';
    } else {
      if (!SDK_RESOURCES.has(part)) return undefined;
      resources.push(part);
    }
  }
  if (!resources.length || ids.length > resources.length) return undefined;
  const onItem = ids.length === resources.length;
  const method = request.method;
  if (!verb) {
    if (onItem) verb = { GET: 'retrieve', POST: 'update', DELETE: 'delete' }[method];
    else verb = { GET: 'list', POST: 'create' }[method];
  } else if (method !== 'GET') return undefined;
  if (!verb) return undefined;
  return { resources, ids, verb };
}

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const pascal = (name) => camel(name).replace(/^./, (c) => c.toUpperCase());
const singular = (name) => (name.endsWith('s') ? name.slice(0, -1) : name);

function literal(value, indent, style) {
  const pad = '    '.slice(0, style === 'python' ? 4 : 2);
  const inner = indent + pad;
  if (typeof value === 'bigint') {
    const safe = value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER);
    return style === 'node' && !safe ? JSON.stringify(String(value)) : String(value);
  }
  if (typeof value === 'boolean') return style === 'python' ? (value ? 'True' : 'False') : String(value);
  if (value === null) return style === 'python' ? 'None' : 'null';
  if (typeof value === 'string') return JSON.stringify(value);
  // Python gets trailing commas; Node's literal stays valid JSON (keys quoted, no trailing commas).
  const end = style === 'python' ? ',' : '';
  if (Array.isArray(value)) {
    if (!value.length) return '[]';
    return `[\n${value.map((v) => inner + literal(v, inner, style)).join(',\n')}${end}\n${indent}]`;
  }
  const keys = Object.keys(value);
  if (!keys.length) return '{}';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${literal(value[k], inner, style)}`).join(',\n')}${end}\n${indent}}`;
}

function params(request) {
  return request.bodyPairs.length ? request.body : request.query;
}

export function python(request) {
  const call = sdkCall(request);
  const lines = ['from stripe import StripeClient', ''];
  lines.push(`client = StripeClient(${JSON.stringify(request.key ?? '')}, base_addresses={"api": ${JSON.stringify(request.base)}})`);
  const p = params(request);
  const hasParams = p && Object.keys(p).length;
  const options = request.idempotencyKey ? `{"idempotency_key": ${JSON.stringify(request.idempotencyKey)}}` : '';
  if (call) {
    const args = call.ids.map((name) => JSON.stringify(request.pathValues[name] ?? ''));
    if (hasParams || options) args.push(hasParams ? literal(p, '    ', 'python') : '{}');
    if (options) args.push(options);
    const target = `client.v1.${call.resources.join('.')}.${call.verb}`;
    lines.push(args.length ? `result = ${target}(\n${args.map((a) => `    ${a},`).join('\n')}\n)` : `result = ${target}()`);
    lines.push('print(result)');
  } else {
    const args = [JSON.stringify(request.method.toLowerCase()), JSON.stringify(request.path)];
    if (hasParams) for (const key of Object.keys(p)) args.push(`${key}=${literal(p[key], '    ', 'python')}`);
    if (request.idempotencyKey) args.push(`idempotency_key=${JSON.stringify(request.idempotencyKey)}`);
    lines.push(`response = client.raw_request(\n${args.map((a) => `    ${a},`).join('\n')}\n)`);
    lines.push('print(response.body)');
  }
  return lines.join('\n');
}

export function node(request) {
  const call = sdkCall(request);
  const base = new URL(request.base);
  const port = base.port || (base.protocol === 'https:' ? '443' : '80');
  const lines = ["import Stripe from 'stripe';", ''];
  lines.push(
    `const stripe = new Stripe(${JSON.stringify(request.key ?? '')}, {host: ${JSON.stringify(base.hostname)}, port: ${port}, protocol: ${JSON.stringify(base.protocol.replace(':', ''))}});`,
  );
  const p = params(request);
  const hasParams = p && Object.keys(p).length;
  const options = request.idempotencyKey ? `{idempotencyKey: ${JSON.stringify(request.idempotencyKey)}}` : '';
  let target;
  const args = [];
  if (call) {
    const [top, ...nested] = call.resources;
    if (!nested.length) target = `stripe.${camel(top)}.${call.verb}`;
    else {
      const sub = nested[nested.length - 1];
      target = `stripe.${camel(top)}.${call.verb}${call.verb === 'list' ? pascal(sub) : pascal(singular(sub))}`;
    }
    args.push(...call.ids.map((name) => JSON.stringify(request.pathValues[name] ?? '')));
  } else {
    target = 'stripe.rawRequest';
    args.push(JSON.stringify(request.method), JSON.stringify(request.path));
  }
  if (hasParams || options) args.push(hasParams ? literal(p, '  ', 'node') : '{}');
  if (options) args.push(options);
  lines.push(args.length ? `const result = await ${target}(\n${args.map((a) => `  ${a},`).join('\n')}\n);` : `const result = await ${target}();`);
  lines.push('console.log(result);');
  return lines.join('\n');
}

export function wire(request) {
  const url = new URL(request.url);
  const query = request.queryPairs.length ? `?${encodeForm(request.query)}` : '';
  const lines = [`${request.method} ${url.pathname}${query} HTTP/1.1`, `Host: ${url.host}`];
  if (request.key !== undefined) lines.push(`Authorization: Bearer ${request.key}`);
  if (request.bodyPairs.length) lines.push('Content-Type: application/x-www-form-urlencoded');
  if (request.idempotencyKey) lines.push(`Idempotency-Key: ${request.idempotencyKey}`);
  lines.push('');
  if (request.bodyPairs.length) lines.push(encodeForm(request.body));
  return lines.join('\n');
}

export { formPairs };
