// Field models -> labelled controls, and back: the params tree the encoder turns into the request.
//
// Every control's accessible name is its parameter's bracket path (`email`, `address[city]`,
// `shipping[address][city]`, `preferred_locales[0]`, `metadata[plan]`), the same string a Stripe error
// names in `param`, so an error can be pinned to the input that caused it.
//
// Values: an empty input is left out; "Unset" sends `name=` (the API's way to clear a value); an integer
// that parses is a BigInt (snippets print it as a number), anything else is sent as typed so the server,
// not the page, has the last word on what is valid.

import { h, uid } from './dom.js';

function limitsText(model) {
  const parts = [];
  if (model.kind === 'string' || model.kind === 'integer') {
    if (model.minLength) parts.push(`at least ${model.minLength} characters`);
    if (model.maxLength !== undefined) parts.push(`at most ${model.maxLength} characters`);
    if (model.minimum !== undefined && model.maximum !== undefined) {
      parts.push(`${model.minimum} to ${model.maximum}`);
    } else if (model.minimum !== undefined) parts.push(`≥ ${model.minimum}`);
    else if (model.maximum !== undefined) parts.push(`≤ ${model.maximum}`);
    if (model.notEqual !== undefined) parts.push(`not ${model.notEqual}`);
    if (model.pattern) parts.push(`pattern ${model.pattern}`);
  }
  if (model.kind === 'enum') {
    parts.push(model.options.length > 12 ? `one of ${model.options.length} values` : `one of ${model.options.join(', ')}`);
  }
  if (model.kind === 'map') {
    if (model.maxProperties !== undefined) parts.push(`at most ${model.maxProperties} keys`);
    if (model.keyMaxLength !== undefined) parts.push(`keys ≤ ${model.keyMaxLength} characters`);
    if (model.valueMaxLength !== undefined) parts.push(`values ≤ ${model.valueMaxLength} characters`);
  }
  if (model.kind === 'array' && model.maxItems !== undefined) parts.push(`at most ${model.maxItems} items`);
  if (model.alternatives?.length) parts.push(`or an exact ${model.alternatives.join(' or ')}`);
  return [model.kind === 'integer' ? 'integer' : model.kind === 'boolean' ? 'boolean' : '', ...parts]
    .filter(Boolean)
    .join(' · ');
}

function clientCheck(model, text) {
  if (text === '') return '';
  if (model.kind === 'integer') {
    if (!/^-?\d+$/.test(text)) return 'not an integer: the server will say so';
    const value = BigInt(text);
    if (model.minimum !== undefined && value < BigInt(model.minimum)) return `below the minimum ${model.minimum}`;
    if (model.maximum !== undefined && value > BigInt(model.maximum)) return `above the maximum ${model.maximum}`;
    if (model.notEqual !== undefined && value === BigInt(model.notEqual)) return `must not be ${model.notEqual}`;
  }
  if (model.kind === 'string') {
    const length = [...text].length;
    if (model.maxLength !== undefined && length > model.maxLength) return `${length} characters, more than ${model.maxLength}`;
    if (model.minLength && length < model.minLength) return `fewer than ${model.minLength} characters`;
    if (model.pattern) {
      try {
        if (!new RegExp(model.pattern, 'u').test(text)) return `does not match ${model.pattern}`;
      } catch {
        /* a pattern JavaScript cannot compile: the server checks it */
      }
    }
  }
  return '';
}

// `code` spans of a description (the document's Markdown) as <code>; everything else stays text.
export function withCode(text) {
  return text.split('`').map((part, index) => (index % 2 ? h('code', {}, part) : part));
}

export class Form {
  constructor(onChange) {
    this.onChange = onChange;
    this.entries = new Map(); // bracket path -> {input, message, container}
    this.readers = [];
  }

  changed() {
    this.onChange();
  }

  register(path, entry) {
    this.entries.set(path, entry);
  }

  unregister(path, entry) {
    if (this.entries.get(path) === entry) this.entries.delete(path);
  }

  // The control a Stripe error's `param` names: the exact path, else its closest enclosing group.
  find(param) {
    let path = param;
    while (path) {
      const entry = this.entries.get(path);
      if (entry) return entry;
      const cut = path.lastIndexOf('[');
      if (cut <= 0) break;
      path = path.slice(0, cut);
    }
    return undefined;
  }

  clearErrors() {
    for (const entry of this.entries.values()) {
      entry.input?.removeAttribute('aria-invalid');
      entry.container.classList.remove('has-error');
      if (entry.message) entry.message.textContent = '';
    }
  }

  showError(param, message) {
    const entry = param ? this.find(param) : undefined;
    if (!entry) return undefined;
    entry.container.classList.add('has-error');
    if (entry.input) entry.input.setAttribute('aria-invalid', 'true');
    if (entry.message) entry.message.textContent = message;
    entry.container.scrollIntoView({ block: 'center' });
    (entry.input || entry.container).focus({ preventScroll: true });
    return entry;
  }

  // --- controls ------------------------------------------------------------------------------------

  control(model) {
    switch (model.kind) {
      case 'object':
        return this.object(model);
      case 'map':
        return this.map(model);
      case 'array':
        return this.array(model);
      default:
        return this.scalar(model);
    }
  }

  unsetToggle(model, onToggle) {
    const button = h('button', {
      type: 'button',
      class: 'unset',
      'aria-pressed': 'false',
      'aria-label': `Unset ${model.path}`,
      title: `Send ${model.path}= (empty: clears the value)`,
      onclick: () => {
        const pressed = button.getAttribute('aria-pressed') !== 'true';
        button.setAttribute('aria-pressed', String(pressed));
        onToggle(pressed);
        this.changed();
      },
    }, 'Unset');
    return button;
  }

  describe(model, id) {
    const limits = limitsText(model);
    return [
      model.description ? h('p', { class: 'description', id: `${id}-description` }, withCode(model.description)) : null,
      limits ? h('p', { class: 'limits', id: `${id}-limits` }, limits) : null,
    ];
  }

  scalar(model) {
    const id = uid('in');
    let input;
    if (model.kind === 'enum' || model.kind === 'boolean') {
      const options = model.kind === 'boolean' ? ['true', 'false'] : model.options;
      input = h('select', { id, name: model.path }, h('option', { value: '' }, '—'), options.map((o) => h('option', { value: String(o) }, String(o))));
    } else {
      input = h('input', {
        id,
        name: model.path,
        type: 'text',
        inputmode: model.kind === 'integer' ? 'numeric' : undefined,
        autocomplete: 'off',
        spellcheck: 'false',
      });
    }
    const check = h('p', { class: 'check', id: `${id}-check`, 'aria-live': 'polite' });
    const message = h('p', { class: 'error-text', id: `${id}-error`, role: 'alert' });
    const described = [`${id}-error`, model.description ? `${id}-description` : '', limitsText(model) ? `${id}-limits` : '', `${id}-check`];
    input.setAttribute('aria-describedby', described.filter(Boolean).join(' '));
    let unset = false;
    const toggle = model.unsettable
      ? this.unsetToggle(model, (pressed) => {
          unset = pressed;
          input.disabled = pressed;
        })
      : null;
    input.addEventListener('input', () => {
      check.textContent = clientCheck(model, input.value);
      this.changed();
    });
    const container = h(
      'div',
      { class: `field kind-${model.kind}` },
      h('div', { class: 'field-head' }, h('label', { for: id }, h('code', {}, model.path)), model.required ? h('span', { class: 'required' }, 'required') : null, toggle),
      input,
      message,
      this.describe(model, id),
      check,
    );
    const entry = { input, message, container };
    this.register(model.path, entry);
    const read = () => {
      if (unset) return '';
      const text = input.value;
      if (text === '') return undefined;
      if (model.kind === 'integer' && /^-?\d+$/.test(text)) return BigInt(text);
      if (model.kind === 'boolean') return text === 'true';
      return text;
    };
    return { element: container, read, input };
  }

  group(model, body, toggleTarget) {
    const id = uid('grp');
    const message = h('p', { class: 'error-text', id: `${id}-error`, role: 'alert' });
    let unset = false;
    // Named by the path alone (not the legend's buttons), described by its error, text and limits.
    const described = [`${id}-error`, model.description ? `${id}-description` : '', limitsText(model) ? `${id}-limits` : ''];
    const fieldset = h('fieldset', { class: `group kind-${model.kind}`, 'aria-labelledby': `${id}-name`, 'aria-describedby': described.filter(Boolean).join(' ') });
    const toggle = model.unsettable
      ? this.unsetToggle(model, (pressed) => {
          unset = pressed;
          toggleTarget.disabled = pressed;
          toggleTarget.classList.toggle('is-unset', pressed);
        })
      : null;
    fieldset.append(
      h('legend', {}, h('code', { id: `${id}-name` }, model.path), model.required ? h('span', { class: 'required' }, 'required') : null, toggle),
      message,
      ...this.describe(model, id).filter(Boolean),
      toggleTarget,
    );
    toggleTarget.append(...body);
    fieldset.tabIndex = -1;
    this.register(model.path, { input: null, message, container: fieldset });
    return { fieldset, isUnset: () => unset };
  }

  // "Add metadata entry" / "Remove last metadata entry" (and the same for array items).
  rowButtons(model, noun, add, removeLast) {
    return h(
      'div',
      { class: 'row-buttons' },
      h('button', { type: 'button', onclick: () => { add(); this.changed(); } }, `Add ${model.path} ${noun}`),
      h('button', { type: 'button', onclick: removeLast }, `Remove last ${model.path} ${noun}`),
    );
  }

  object(model) {
    const children = model.children.map((child) => this.control(child));
    const inner = h('fieldset', { class: 'group-body' });
    const { fieldset, isUnset } = this.group(model, children.map((c) => c.element), inner);
    const read = () => {
      if (isUnset()) return '';
      const value = {};
      model.children.forEach((child, index) => {
        const v = children[index].read();
        if (v !== undefined) value[child.name] = v;
      });
      return Object.keys(value).length ? value : undefined;
    };
    return { element: fieldset, read };
  }

  map(model) {
    const rows = [];
    const list = h('div', { class: 'rows' });
    const inner = h('fieldset', { class: 'group-body' });
    const addRow = () => {
      const n = rows.length + 1;
      const key = h('input', { type: 'text', class: 'map-key', autocomplete: 'off', spellcheck: 'false', 'aria-label': `${model.path} key ${n}`, placeholder: 'key' });
      const value = h('input', { type: 'text', class: 'map-value', autocomplete: 'off', spellcheck: 'false', 'aria-label': `${model.path} value ${n}`, placeholder: 'value ("" removes the key)' });
      const message = h('p', { class: 'error-text', role: 'alert' });
      const container = h('div', { class: 'map-row' }, key, value, message);
      const row = { key, value, container, path: '', entry: { input: value, message, container } };
      const rename = () => {
        this.unregister(row.path, row.entry);
        row.path = key.value ? `${model.path}[${key.value}]` : '';
        value.setAttribute('aria-label', row.path || `${model.path} value ${n}`);
        if (row.path) this.register(row.path, row.entry);
      };
      key.addEventListener('input', () => {
        rename();
        this.changed();
      });
      value.addEventListener('input', () => this.changed());
      rows.push(row);
      list.append(container);
      return row;
    };
    const removeRow = () => {
      const row = rows.pop();
      if (!row) return;
      this.unregister(row.path, row.entry);
      row.container.remove();
      this.changed();
    };
    addRow();
    const { fieldset, isUnset } = this.group(model, [list, this.rowButtons(model, 'entry', addRow, removeRow)], inner);
    const read = () => {
      if (isUnset()) return '';
      const value = {};
      for (const row of rows) if (row.key.value !== '') value[row.key.value] = row.value.value;
      return Object.keys(value).length ? value : undefined;
    };
    return { element: fieldset, read };
  }

  array(model) {
    const items = [];
    const list = h('div', { class: 'items' });
    const inner = h('fieldset', { class: 'group-body' });
    const itemModel = (index) => {
      const path = `${model.path}[${index}]`;
      const rebase = (m, prefix) => {
        const rebased = { ...m, path: prefix, name: m.name, required: m.required };
        if (m.kind === 'object') rebased.children = m.children.map((c) => rebase(c, `${prefix}[${c.name}]`));
        return rebased;
      };
      return rebase({ ...model.item, description: '', unsettable: false }, path);
    };
    const addItem = () => {
      const built = this.control(itemModel(items.length));
      items.push(built);
      list.append(built.element);
    };
    const removeItem = () => {
      const item = items.pop();
      if (!item) return;
      item.element.remove();
      const removed = `${model.path}[${items.length}]`;
      for (const [path, entry] of [...this.entries]) if (path === removed || path.startsWith(`${removed}[`)) this.unregister(path, entry);
      this.changed();
    };
    addItem();
    const { fieldset, isUnset } = this.group(model, [list, this.rowButtons(model, 'item', addItem, removeItem)], inner);
    const read = () => {
      if (isUnset()) return '';
      const values = items.map((item) => item.read()).filter((v) => v !== undefined);
      return values.length ? values : undefined;
    };
    return { element: fieldset, read };
  }

  // A section of fields; returns the element and a reader of the params tree (field order = schema order).
  section(fields) {
    const built = fields.map((model) => ({ model, control: this.control(model) }));
    const read = () => {
      const params = {};
      for (const { model, control } of built) {
        const value = control.read();
        if (value !== undefined) params[model.name] = value;
      }
      return params;
    };
    return { elements: built.map((b) => b.control.element), read, controls: built };
  }
}
