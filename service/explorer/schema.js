// OpenAPI document -> the operations and field models the page renders. Nothing here knows any
// particular operation: whatever /openapi.json says at load time is what the page shows.

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];
const NO_NUL = '^[^\\x00]*$';

function pointer(doc, ref) {
  if (!ref.startsWith('#/')) throw new Error(`unsupported $ref ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((node, part) => (node === undefined ? undefined : node[part]), doc);
}

// A schema with its $ref followed (siblings of $ref, such as minProperties, are kept).
export function resolve(doc, schema, seen = new Set()) {
  let current = schema || {};
  while (current.$ref) {
    if (seen.has(current.$ref)) break;
    seen.add(current.$ref);
    const { $ref, ...siblings } = current;
    current = { ...(pointer(doc, $ref) || {}), ...siblings };
  }
  return current;
}

const isUnsetOption = (s) => s.const === '' || s.type === 'null';

function types(schema) {
  if (Array.isArray(schema.type)) return schema.type;
  return schema.type ? [schema.type] : [];
}

// One parameter (or nested property) as the form needs it.
export function field(doc, rawSchema, name, path, extra = {}) {
  let schema = resolve(doc, rawSchema);
  let unsettable = false;
  let alternatives = [];
  const description = schema.description || extra.description || '';
  if (schema.anyOf || schema.oneOf) {
    const options = (schema.anyOf || schema.oneOf).map((s) => resolve(doc, s));
    unsettable = options.some(isUnsetOption);
    const real = options.filter((s) => !isUnsetOption(s));
    // created: an exact integer or a range object; the form offers the richer (object) shape.
    const chosen = real.find((s) => types(s).includes('object')) || real[0] || {};
    alternatives = real.filter((s) => s !== chosen).map((s) => types(s).join('|') || 'value');
    schema = { ...chosen, description: description || chosen.description };
  }
  const kinds = types(schema);
  if (kinds.includes('null')) unsettable = true;
  const kind = kinds.find((t) => t !== 'null');
  const base = {
    name,
    path,
    description: schema.description || description,
    unsettable,
    required: Boolean(extra.required),
    alternatives,
  };
  if (Array.isArray(schema.enum)) {
    return { ...base, kind: 'enum', options: schema.enum.filter((v) => v !== '' && v !== null) };
  }
  if (kind === 'object' && schema.properties && Object.keys(schema.properties).length) {
    const required = new Set(schema.required || []);
    return {
      ...base,
      kind: 'object',
      children: Object.entries(schema.properties)
        .filter(([, child]) => resolve(doc, child).type !== 'null') // null-only: nothing to send
        .map(([child, childSchema]) =>
          field(doc, childSchema, child, `${path}[${child}]`, { required: required.has(child) }),
        ),
    };
  }
  if (kind === 'object') {
    const values = field(doc, schema.additionalProperties === true ? {} : schema.additionalProperties || {}, 'value', `${path}[…]`);
    const names = resolve(doc, schema.propertyNames || {});
    return {
      ...base,
      kind: 'map',
      maxProperties: schema.maxProperties,
      keyMaxLength: names.maxLength,
      valueMaxLength: values.maxLength,
    };
  }
  if (kind === 'array') {
    return {
      ...base,
      kind: 'array',
      maxItems: schema.maxItems,
      item: field(doc, schema.items || {}, name, `${path}[#]`),
    };
  }
  const scalar = {
    ...base,
    maxLength: schema.maxLength,
    minLength: schema.minLength,
    minimum: schema.minimum,
    maximum: schema.maximum,
    notEqual: schema.not && 'const' in schema.not ? schema.not.const : undefined,
    pattern: schema.pattern && schema.pattern !== NO_NUL ? schema.pattern : undefined,
  };
  if (kind === 'integer' || kind === 'number') return { ...scalar, kind: 'integer' };
  if (kind === 'boolean') return { ...scalar, kind: 'boolean' };
  return { ...scalar, kind: 'string' };
}

function parameterField(doc, parameter) {
  const p = resolve(doc, parameter);
  return field(doc, p.schema || {}, p.name, p.name, { required: p.required, description: p.description });
}

// Every operation of the document, in document order.
export function operations(doc) {
  const found = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of Object.keys(item).filter((name) => METHODS.includes(name))) {
      const op = item[method];
      const parameters = [...(item.parameters || []), ...(op.parameters || [])].map((p) => resolve(doc, p));
      const inside = (where) => parameters.filter((p) => p.in === where);
      const idempotency = inside('header').find((p) => p.name.toLowerCase() === 'idempotency-key');
      const content = op.requestBody ? resolve(doc, op.requestBody).content || {} : {};
      const form = content['application/x-www-form-urlencoded'];
      const bodySchema = form ? resolve(doc, form.schema) : undefined;
      const required = new Set(bodySchema?.required || []);
      found.push({
        id: op.operationId || `${method} ${path}`,
        method: method.toUpperCase(),
        path,
        summary: op.summary || '',
        description: op.description || '',
        tag: (op.tags && op.tags[0]) || 'Other',
        public: Array.isArray(op.security) && op.security.length === 0,
        pathParams: inside('path').map((p) => parameterField(doc, p)),
        queryParams: inside('query').map((p) => parameterField(doc, p)),
        body: bodySchema
          ? {
              description: bodySchema.description || '',
              fields: Object.entries(bodySchema.properties || {}).map(([name, s]) =>
                field(doc, s, name, name, { required: required.has(name) }),
              ),
            }
          : undefined,
        idempotency: idempotency ? { description: idempotency.description || '', schema: resolve(doc, idempotency.schema) } : undefined,
      });
    }
  }
  return found;
}

// `cus_` from "The customer's id (`cus_…`)." — lets the page offer ids it has seen for a path parameter.
export function idPrefix(fieldModel) {
  const match = /`([a-z]+_)…?`/.exec(fieldModel.description || '');
  return match ? match[1] : undefined;
}
