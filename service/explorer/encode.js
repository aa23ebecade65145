// The one form encoder of the explorer. It feeds the request the page sends *and* every snippet, so a
// snippet is always exactly what goes on the wire.
//
// Semantics are stripe-node's (cjs/utils.js stringifyRequestData, stripe@23): keys in insertion order;
// nested objects as key[child]; arrays always indexed, key[0], key[1] (also for `expand`); null as `key=`;
// undefined skipped; empty objects and arrays send nothing; booleans `true`/`false`; numbers and BigInts in
// decimal. Keys and values are percent-encoded like encodeURIComponent plus ! * ( ) ' (so exactly the
// RFC 3986 unreserved characters stay literal, as curl's --data-urlencode does), with [ and ] put back
// literal for readability (service/forms.py accepts both spellings).

export function encodeComponent(text) {
  return encodeURIComponent(text)
    .replace(/!/g, '%21')
    .replace(/\*/g, '%2A')
    .replace(/\(/g, '%28')
    .replace(/\)/g, '%29')
    .replace(/'/g, '%27')
    .replace(/%5B/g, '[')
    .replace(/%5D/g, ']');
}

function scalarText(value) {
  if (value === null) return '';
  if (value instanceof Date) return String(Math.floor(value.getTime() / 1000));
  return String(value);
}

// [[key, value], ...] before percent-encoding: what the server's form decoder will see.
export function formPairs(params) {
  const pairs = [];
  const walk = (key, value) => {
    if (value === undefined) return;
    if (value === null || typeof value !== 'object' || value instanceof Date) {
      pairs.push([key, scalarText(value)]);
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => walk(`${key}[${index}]`, item));
    } else {
      for (const child of Object.keys(value)) walk(`${key}[${child}]`, value[child]);
    }
  };
  if (params && typeof params === 'object') {
    for (const key of Object.keys(params)) walk(key, params[key]);
  }
  return pairs;
}

export function encodePair([key, value]) {
  return `${encodeComponent(key)}=${encodeComponent(value)}`;
}

// The body (or query string) exactly as sent.
export function encodeForm(params) {
  return formPairs(params).map(encodePair).join('&');
}
