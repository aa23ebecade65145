// The explorer page: reads /openapi.json at load time, renders the chosen operation as a labelled form,
// keeps four snippets in step with it on every keystroke, sends the request, and shows what came back
// and what the request wrote to the event log (read back from the API's own endpoints).

import { append, clear, h } from './dom.js';
import { encodeForm, formPairs } from './encode.js';
import { Form, withCode } from './form.js';
import { idPrefix, operations } from './schema.js';
import * as snippets from './snippets.js';

const STORAGE_KEY = 'ledgerd.explorer.secretKey';
const STORAGE_BASE = 'ledgerd.explorer.baseUrl';
const GENESIS = '0'.repeat(64);
const SHOWN_HEADERS = ['Request-Id', 'Idempotent-Replayed', 'Original-Request', 'Idempotency-Key', 'Stripe-Should-Retry', 'Retry-After', 'Content-Type'];
const TABS = [
  ['curl', snippets.curl],
  ['Python', snippets.python],
  ['Node', snippets.node],
  ['Wire', snippets.wire],
];

const $ = (id) => document.getElementById(id);
const narrow = window.matchMedia('(max-width: 999px)');

const state = {
  ops: [],
  op: undefined,
  view: undefined, // the rendered operation: sections, inputs, buttons
  last: undefined, // the last request sent from this view (for "Replay with the same key")
  seen: {}, // id prefix -> the last id of that kind seen in a response (prefills path parameters)
  inFlight: false,
};

// --- keys and base URL ---------------------------------------------------------------------------------

function defaultBase() {
  return new URL('./', window.location.href).href.replace(/\/$/, '');
}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return undefined; // storage disabled: the key lives only as long as the page
  }
}

function secretKey() {
  return $('secret-key').value.trim();
}

function baseUrl() {
  const text = $('base-url').value.trim() || defaultBase();
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return { text, error: 'The base URL must be http or https.' };
    return { text: url.href.replace(/\/$/, ''), url, sameOrigin: url.origin === window.location.origin };
  } catch {
    return { text, error: 'Not a URL.' };
  }
}

function updateAuth() {
  const key = secretKey();
  const badge = $('mode-badge');
  badge.classList.remove('test', 'live', 'unknown');
  if (!key) badge.textContent = 'No key';
  else if (key.startsWith('sk_test_')) { badge.textContent = 'Test mode'; badge.classList.add('test'); }
  else if (key.startsWith('sk_live_')) { badge.textContent = 'Live mode'; badge.classList.add('live'); }
  else { badge.textContent = 'Unknown key type'; badge.classList.add('unknown'); }
  const base = baseUrl();
  const note = $('base-note');
  if (base.error) note.textContent = base.error;
  else if (!base.sameOrigin) {
    note.textContent = `This page sends only to its own origin (${window.location.origin}; its Content-Security-Policy allows no other): snippets use ${base.text}, Send is off.`;
  } else note.textContent = base.text === defaultBase() ? 'This service (the page\'s own origin).' : `A path on this origin: ${base.text}.`;
  updateSendState();
  renderSnippets();
}

function setUpAuth() {
  const store = storage();
  $('secret-key').value = store?.getItem(STORAGE_KEY) || '';
  $('base-url').value = store?.getItem(STORAGE_BASE) || defaultBase();
  $('secret-key').addEventListener('input', () => {
    const key = secretKey();
    if (key) store?.setItem(STORAGE_KEY, key);
    else store?.removeItem(STORAGE_KEY);
    updateAuth();
  });
  $('base-url').addEventListener('input', () => {
    const text = $('base-url').value.trim();
    if (text && text !== defaultBase()) store?.setItem(STORAGE_BASE, text);
    else store?.removeItem(STORAGE_BASE);
    updateAuth();
  });
  $('forget-key').addEventListener('click', () => {
    store?.removeItem(STORAGE_KEY);
    $('secret-key').value = '';
    updateAuth();
  });
  $('show-key').addEventListener('click', () => {
    const button = $('show-key');
    const shown = button.getAttribute('aria-pressed') !== 'true';
    button.setAttribute('aria-pressed', String(shown));
    button.textContent = shown ? 'Hide' : 'Show';
    $('secret-key').type = shown ? 'text' : 'password';
  });
  $('reveal-key').addEventListener('change', renderSnippets);
}

// --- idempotency keys ----------------------------------------------------------------------------------

function freshIdempotencyKey() {
  // getRandomValues works on plain http too (randomUUID needs a secure context).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `explorer_${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
}

// --- operations list -----------------------------------------------------------------------------------

function renderNav() {
  const nav = clear($('operation-list'));
  const tags = new Map();
  for (const op of state.ops) {
    if (!tags.has(op.tag)) tags.set(op.tag, []);
    tags.get(op.tag).push(op);
  }
  for (const [tag, ops] of tags) {
    nav.append(
      h('h2', {}, tag),
      h('ul', {}, ops.map((op) => {
        const summaryId = `summary-${op.id}`;
        return h('li', {},
          h('button', {
            type: 'button',
            class: 'op-button',
            'data-op': op.id,
            'aria-label': `${op.method} ${op.path}`,
            'aria-describedby': summaryId,
            onclick: () => selectOperation(op.id, true),
          }, h('span', { class: `method m-${op.method.toLowerCase()}` }, op.method), ' ', h('span', { class: 'path' }, breakable(op.path))),
          h('span', { class: 'op-summary', id: summaryId }, op.summary));
      })),
    );
  }
}

// A path that wraps after its slashes, not in the middle of a name.
function breakable(path) {
  return path.split('/').flatMap((part, index) => (index ? [h('wbr'), `/${part}`] : [part]));
}

function selectOperation(id, fromClick = false) {
  const op = state.ops.find((o) => o.id === id) || state.ops[0];
  if (!op) return;
  state.op = op;
  state.last = undefined;
  for (const button of document.querySelectorAll('.op-button')) {
    if (button.dataset.op === op.id) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
  }
  $('current-operation').textContent = `${op.method} ${op.path}`;
  if (window.location.hash !== `#${op.id}`) window.history.replaceState(null, '', `#${op.id}`);
  renderOperation(op);
  if (fromClick && narrow.matches) $('operations').open = false;
  clearOutput();
}

// --- the request form ------------------------------------------------------------------------------------

function section(title, built, note) {
  if (!built.elements.length) return null;
  return h('section', { class: 'params', 'aria-label': title }, h('h3', {}, title), note ? h('p', { class: 'note' }, note) : null, built.elements);
}

function renderOperation(op) {
  const main = clear($('operation'));
  const form = new Form(() => renderSnippets());
  const pathSection = form.section(op.pathParams);
  const querySection = form.section(op.queryParams);
  const bodySection = form.section(op.body ? op.body.fields : []);
  for (const { model, control } of pathSection.controls) {
    const prefix = idPrefix(model);
    if (prefix && state.seen[prefix]) control.input.value = state.seen[prefix];
    control.input.required = true;
  }
  let idempotency = null;
  const view = { op, form, pathSection, querySection, bodySection };
  if (op.idempotency) {
    const enabled = h('input', { type: 'checkbox', id: 'idempotency-enabled', checked: true });
    const input = h('input', { type: 'text', id: 'idempotency-key', value: freshIdempotencyKey(), autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'idempotency-note' });
    enabled.addEventListener('change', () => { input.disabled = !enabled.checked; renderSnippets(); });
    input.addEventListener('input', renderSnippets);
    idempotency = h('section', { class: 'params idempotency', 'aria-label': 'Idempotency' },
      h('h3', {}, 'Idempotency'),
      h('div', { class: 'field' },
        h('label', { class: 'inline' }, enabled, ' Send an Idempotency-Key'),
        h('div', { class: 'field-head' }, h('label', { for: 'idempotency-key' }, h('code', {}, 'Idempotency-Key'))),
        h('div', { class: 'with-button' }, input, h('button', { type: 'button', onclick: () => { input.value = freshIdempotencyKey(); renderSnippets(); } }, 'New key')),
        h('p', { class: 'description', id: 'idempotency-note' }, 'A fresh key for every send. "Replay with the same key" sends the last request again with its key: the service answers with the stored result (Idempotent-Replayed: true) and writes nothing. ', withCode(op.idempotency.description))));
    view.idempotency = { enabled, input };
  }
  const send = h('button', { type: 'button', id: 'send', class: 'primary', 'aria-describedby': 'send-note', onclick: () => sendRequest(false) }, 'Send request');
  const replay = h('button', { type: 'button', id: 'replay', disabled: true, onclick: () => sendRequest(true) }, 'Replay with the same key');
  const sendNote = h('p', { class: 'note', id: 'send-note', 'aria-live': 'polite' });
  view.send = send;
  view.replay = replay;
  view.sendNote = sendNote;
  state.view = view;
  append(main, [
    h('header', { class: 'op-head' },
      h('h2', {}, h('span', { class: `method m-${op.method.toLowerCase()}` }, op.method), ' ', h('code', { class: 'path' }, op.path)),
      h('p', { class: 'summary' }, withCode(op.summary), op.public ? ' (public: no key needed)' : ''),
      op.description ? h('p', { class: 'description' }, withCode(op.description)) : null),
    section('Path parameters', pathSection),
    section('Query parameters', querySection),
    section('Body parameters', bodySection, op.body?.description),
    idempotency,
    h('div', { class: 'actions' }, send, replay, sendNote),
  ]);
  updateSendState();
  renderSnippets();
}

function buildRequest() {
  const view = state.view;
  const pathValues = view.pathSection.read();
  const path = view.op.path.replace(/\{([^}]+)\}/g, (_, name) => encodeURIComponent(String(pathValues[name] ?? '')));
  const query = view.querySection.read();
  const body = view.bodySection.read();
  const base = baseUrl();
  const url = `${base.text}${path}`;
  const queryPairs = formPairs(query);
  const bodyPairs = formPairs(body);
  const key = view.op.public ? undefined : secretKey();
  return {
    op: view.op,
    method: view.op.method,
    base: base.text,
    pathTemplate: view.op.path,
    path,
    pathValues,
    url,
    fetchUrl: queryPairs.length ? `${url}?${encodeForm(query)}` : url,
    query,
    body,
    queryPairs,
    bodyPairs,
    key,
    idempotencyKey: view.idempotency?.enabled.checked ? view.idempotency.input.value.trim() || undefined : undefined,
  };
}

function missingPathParams() {
  const values = state.view.pathSection.read();
  return state.op.pathParams.filter((p) => !values[p.name]).map((p) => p.name);
}

function updateSendState() {
  const view = state.view;
  if (!view) return;
  const base = baseUrl();
  let reason = '';
  if (!view.op.public && !secretKey()) reason = 'Set a secret key to send.';
  else if (base.error) reason = base.error;
  else if (!base.sameOrigin) reason = 'Send is off for another origin (see Base URL).';
  else if (state.inFlight) reason = 'Sending…';
  view.send.disabled = Boolean(reason);
  view.replay.disabled = Boolean(reason) || !state.last?.idempotencyKey;
  view.sendNote.textContent = reason;
}

// --- snippets -----------------------------------------------------------------------------------------

function setUpTabs() {
  const tabs = $('snippet-tabs');
  const panels = $('snippet-panels');
  TABS.forEach(([name], index) => {
    const tab = h('button', { type: 'button', role: 'tab', id: `tab-${name}`, 'aria-controls': `panel-${name}`, 'aria-selected': String(index === 0), tabindex: index === 0 ? '0' : '-1' }, name);
    const copy = h('button', { type: 'button', class: 'copy', onclick: () => copyText(panel.querySelector('code').textContent, copy) }, `Copy ${name}`);
    const panel = h('div', { role: 'tabpanel', id: `panel-${name}`, 'aria-labelledby': `tab-${name}`, hidden: index !== 0, class: 'snippet' }, copy, h('pre', {}, h('code', {})));
    tab.addEventListener('click', () => selectTab(name));
    tab.addEventListener('keydown', (event) => {
      const move = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!move) return;
      const next = TABS[(index + move + TABS.length) % TABS.length][0];
      selectTab(next);
      $(`tab-${next}`).focus();
    });
    tabs.append(tab);
    panels.append(panel);
  });
}

function selectTab(name) {
  for (const [other] of TABS) {
    const selected = other === name;
    $(`tab-${other}`).setAttribute('aria-selected', String(selected));
    $(`tab-${other}`).tabIndex = selected ? 0 : -1;
    $(`panel-${other}`).hidden = !selected;
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.dataset.copied = 'true';
  } catch {
    button.dataset.copied = 'false'; // no clipboard access (insecure context or denied): select by hand
  }
}

function renderSnippets() {
  if (!state.view) return;
  const request = buildRequest();
  const shown = { ...request, key: request.key === undefined ? undefined : $('reveal-key').checked ? request.key : snippets.maskKey(request.key) };
  for (const [name, render] of TABS) {
    $(`panel-${name}`).querySelector('code').textContent = render(shown);
  }
  const panel = $('panel-Wire');
  panel.querySelector('.pairs')?.remove();
  const pairs = request.bodyPairs.length ? request.bodyPairs : request.queryPairs;
  if (pairs.length) {
    panel.append(h('table', { class: 'pairs', 'aria-label': 'Form pairs' },
      h('thead', {}, h('tr', {}, h('th', {}, 'key'), h('th', {}, 'value'))),
      h('tbody', {}, pairs.map(([k, v]) => h('tr', {}, h('td', {}, h('code', {}, k)), h('td', {}, h('code', {}, v)))))));
  }
  updateSendState();
}

// --- sending --------------------------------------------------------------------------------------------

async function sendRequest(replay) {
  const view = state.view;
  if (!replay) {
    const missing = missingPathParams();
    if (missing.length) {
      view.form.clearErrors();
      view.form.showError(missing[0], `Required: the path needs ${missing[0]}.`);
      return;
    }
  }
  const request = replay ? state.last : buildRequest();
  if (!request) return;
  if (request.key?.startsWith('sk_live_') && request.method !== 'GET') {
    const ok = window.confirm(`Live mode: ${request.method} ${request.path} changes live data with ${snippets.maskKey(request.key)}. Send it?`);
    if (!ok) return;
  }
  view.form.clearErrors();
  state.inFlight = true;
  updateSendState();
  const headers = {};
  if (request.key !== undefined) headers.Authorization = `Bearer ${request.key}`;
  if (request.bodyPairs.length) headers['Content-Type'] = 'application/x-www-form-urlencoded';
  if (request.idempotencyKey) headers['Idempotency-Key'] = request.idempotencyKey;
  const started = performance.now();
  let response;
  let text = '';
  try {
    response = await fetch(request.fetchUrl, {
      method: request.method,
      headers,
      body: request.bodyPairs.length ? encodeForm(request.body) : undefined,
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
    });
    text = await response.text();
  } catch (error) {
    state.inFlight = false;
    updateSendState();
    renderNetworkError(request, error);
    return;
  }
  const elapsed = Math.round(performance.now() - started);
  state.inFlight = false;
  if (!replay) {
    state.last = request;
    if (view.idempotency && request.idempotencyKey) view.idempotency.input.value = freshIdempotencyKey();
  }
  let json;
  if ((response.headers.get('Content-Type') || '').includes('json')) {
    try { json = JSON.parse(text); } catch { json = undefined; }
  }
  remember(json);
  const highlighted = json?.error?.param ? view.form.showError(json.error.param, json.error.message) : undefined;
  renderResponse(request, response, text, json, elapsed, replay, highlighted);
  renderSnippets();
  if (request.method !== 'GET') await renderWritten(request, response, json);
}

function remember(json) {
  const walk = (value, depth) => {
    if (!value || typeof value !== 'object' || depth > 2) return;
    if (typeof value.id === 'string') {
      const match = /^([a-z]+_)/.exec(value.id);
      if (match && !value.deleted) state.seen[match[1]] = value.id;
    }
    if (Array.isArray(value.data)) value.data.slice(0, 1).forEach((item) => walk(item, depth + 1));
  };
  walk(json, 0);
}

function clearOutput() {
  clear($('response-body'));
  clear($('written-body'));
  $('response-empty').hidden = false;
  $('written-empty').hidden = false;
}

function renderNetworkError(request, error) {
  $('response-empty').hidden = true;
  clear($('response-body')).append(h('p', { class: 'status bad', role: 'alert' }, `No response from ${request.fetchUrl}: ${error.message || error}`));
}

function headerRow(name, value) {
  const children = [h('dt', {}, name), h('dd', {}, h('code', {}, value))];
  if (name === 'Request-Id' || name === 'Original-Request') {
    const copy = h('button', { type: 'button', class: 'copy small', 'aria-label': `Copy ${name}`, onclick: () => copyText(value, copy) }, 'Copy');
    children[1].append(' ', copy);
  }
  return children;
}

function renderResponse(request, response, text, json, elapsed, replay, highlighted) {
  $('response-empty').hidden = true;
  const body = clear($('response-body'));
  const good = response.status < 400;
  body.append(
    h('p', { class: `status ${good ? 'good' : 'bad'}` },
      h('strong', { class: 'status-code' }, `${response.status} ${response.statusText}`),
      ` · ${elapsed} ms · ${request.method} ${request.path}${replay ? ' · replayed with the same key' : ''}`),
  );
  const rows = SHOWN_HEADERS.filter((name) => response.headers.has(name)).flatMap((name) => headerRow(name, response.headers.get(name)));
  body.append(h('dl', { class: 'headers', 'aria-label': 'Response headers' }, rows));
  if (json?.error) {
    const e = json.error;
    const where = e.param ? (highlighted ? ` The input ${e.param} is marked on the form.` : ` (${e.param} is not an input of this form.)`) : '';
    body.append(h('p', { class: 'error-summary', role: 'alert' },
      h('strong', {}, e.type || 'error'), e.code ? ` · ${e.code}` : '', e.param ? ` · param ${e.param}` : '', `: ${e.message}`, where));
  }
  body.append(h('pre', { class: 'json', tabindex: '0', 'aria-label': 'Response body' }, h('code', {}, json !== undefined ? JSON.stringify(json, null, 2) : text)));
}

// --- what this call wrote -------------------------------------------------------------------------------

async function apiGet(request, path) {
  const headers = request.key ? { Authorization: `Bearer ${request.key}` } : {};
  const response = await fetch(`${request.base}${path}`, { headers, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  if (!response.ok) throw new Error(`GET ${path}: ${response.status}`);
  return response.json();
}

function findOp(method, test) {
  return state.ops.find((op) => op.method === method && test(op.path));
}

function hashLink(previous, hash) {
  return h('p', { class: 'chain' },
    h('span', { class: 'chain-label' }, 'previous'), ' ',
    h('code', { class: 'hash', title: 'hash of the previous event of this stream (zeros: the first)' }, previous), ' → ',
    h('span', { class: 'chain-label' }, 'hash'), ' ',
    h('code', { class: 'hash', title: "this event's hash: sha256(previous hash ‖ its canonical bytes)" }, hash));
}

async function renderWritten(request, response, json) {
  $('written-empty').hidden = true;
  const out = clear($('written-body'));
  if (!response.ok) {
    out.append(h('p', { class: 'note' }, response.status < 500
      ? `Nothing: the request was refused (${response.status}), and a refused request appends no event.`
      : `Unknown: the service failed (${response.status}); retry with the same Idempotency-Key to find out.`));
    return;
  }
  const replayed = response.headers.get('Idempotent-Replayed') === 'true';
  const requestId = response.headers.get('Original-Request') || response.headers.get('Request-Id');
  const customerId = json?.object === 'customer' ? json.id : json?.customer || request.pathValues.customer;
  out.append(h('p', {}, replayed
    ? `Replayed: this call appended nothing. The original request ${requestId} had appended:`
    : `Request ${requestId} appended:`));
  const historyOp = findOp('GET', (path) => /\/\{[^}]+\}\/history$/.test(path));
  if (customerId && historyOp) {
    try {
      const path = historyOp.path.replace(/\{[^}]+\}/, encodeURIComponent(customerId));
      const history = await apiGet(request, path);
      const entries = history.data || [];
      const byVersion = new Map(entries.map((entry) => [entry.version, entry]));
      const mine = entries.filter((entry) => entry.request_id === requestId);
      if (!mine.length) out.append(h('p', { class: 'note' }, `No event of ${customerId}'s stream names request ${requestId}.`));
      out.append(h('ol', { class: 'events', 'aria-label': 'Appended events' }, mine.map((entry) => {
        const previous = entry.version > 1 ? byVersion.get(entry.version - 1)?.hash || '(not shown)' : GENESIS;
        const transaction = entry.changes?.balance_transaction?.after;
        const changed = Object.keys(entry.changes || {}).filter((name) => name !== 'balance_transaction');
        return h('li', { class: 'event' },
          h('p', { class: 'event-head' }, h('strong', { class: 'event-type' }, entry.type), ` · ${customerId} v${entry.version} · `, h('code', {}, entry.event_id)),
          transaction ? h('p', { class: 'ledger' }, `balance transaction `, h('code', {}, transaction.id), ` (${transaction.type}): amount ${transaction.amount} → `, h('strong', {}, `ending_balance ${transaction.ending_balance}`), ` ${transaction.currency || ''} (minor units)`) : null,
          changed.length ? h('p', { class: 'changed' }, `changed: ${changed.join(', ')}`) : null,
          hashLink(previous, entry.hash));
      })));
    } catch (error) {
      out.append(h('p', { class: 'note' }, `Could not read the stream's history: ${error.message}`));
    }
  }
  const eventsOp = findOp('GET', (path) => path === '/v1/events');
  if (eventsOp) {
    try {
      const feed = await apiGet(request, `${eventsOp.path}?limit=100`);
      const mine = (feed.data || []).filter((event) => event.request?.id === requestId).reverse();
      out.append(h('p', { class: 'feed-head' }, mine.length ? 'Events in the Stripe event feed (GET /v1/events):' : 'No event of this request among the newest 100 in GET /v1/events.'));
      if (mine.length) {
        out.append(h('ul', { class: 'feed', 'aria-label': 'Feed events' }, mine.map((event) => h('li', {}, h('code', {}, event.id), ` ${event.type}`))));
      }
    } catch (error) {
      out.append(h('p', { class: 'note' }, `Could not read the event feed: ${error.message}`));
    }
  }
}

// --- start -------------------------------------------------------------------------------------------------

function adaptToWidth() {
  $('operations').open = !narrow.matches;
}

async function start() {
  setUpAuth();
  setUpTabs();
  adaptToWidth();
  narrow.addEventListener('change', adaptToWidth);
  let doc;
  try {
    const response = await fetch(new URL('openapi.json', window.location.href), { cache: 'no-store', credentials: 'omit' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    doc = await response.json();
  } catch (error) {
    clear($('operation')).append(h('p', { class: 'status bad', role: 'alert' }, `Could not load /openapi.json: ${error.message}`));
    return;
  }
  state.ops = operations(doc);
  document.title = `${doc.info?.title || 'API'} explorer`;
  renderNav();
  selectOperation(decodeURIComponent(window.location.hash.slice(1)));
  updateAuth();
  document.body.dataset.ready = 'true';
}

start();
