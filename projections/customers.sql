-- The customer view: one row per customer with every Stripe field, its balance and stream version.

-- name: created
INSERT INTO customers (
    id, account, livemode, position, version, created, deleted, email, name, phone, description,
    business_name, individual_name, address, shipping, invoice_prefix, invoice_settings,
    next_invoice_sequence, preferred_locales, tax_exempt, metadata, external_id, balance, currency)
SELECT $1, $2, $3, $4, $5, $6, false,
       p->>'email', p->>'name', p->>'phone', p->>'description', p->>'business_name', p->>'individual_name',
       nullif(p->'address', 'null'::jsonb), nullif(p->'shipping', 'null'::jsonb),
       p->>'invoice_prefix', p->'invoice_settings', (p->>'next_invoice_sequence')::bigint,
       p->'preferred_locales', p->>'tax_exempt', p->'metadata', p->>'external_id', 0, $8
FROM (SELECT $7::jsonb AS p) AS profile
RETURNING *

-- name: updated
-- $2 holds only the changed fields: `c ? 'x'` tells whether x changed; a JSON null sets SQL NULL.
UPDATE customers SET
    version = $3,
    email = CASE WHEN c ? 'email' THEN c->>'email' ELSE email END,
    name = CASE WHEN c ? 'name' THEN c->>'name' ELSE name END,
    phone = CASE WHEN c ? 'phone' THEN c->>'phone' ELSE phone END,
    description = CASE WHEN c ? 'description' THEN c->>'description' ELSE description END,
    business_name = CASE WHEN c ? 'business_name' THEN c->>'business_name' ELSE business_name END,
    individual_name = CASE WHEN c ? 'individual_name' THEN c->>'individual_name' ELSE individual_name END,
    address = CASE WHEN c ? 'address' THEN nullif(c->'address', 'null'::jsonb) ELSE address END,
    shipping = CASE WHEN c ? 'shipping' THEN nullif(c->'shipping', 'null'::jsonb) ELSE shipping END,
    invoice_prefix = CASE WHEN c ? 'invoice_prefix' THEN c->>'invoice_prefix' ELSE invoice_prefix END,
    invoice_settings = CASE WHEN c ? 'invoice_settings' THEN c->'invoice_settings' ELSE invoice_settings END,
    next_invoice_sequence = CASE WHEN c ? 'next_invoice_sequence'
        THEN (c->>'next_invoice_sequence')::bigint ELSE next_invoice_sequence END,
    preferred_locales = CASE WHEN c ? 'preferred_locales' THEN c->'preferred_locales' ELSE preferred_locales END,
    tax_exempt = CASE WHEN c ? 'tax_exempt' THEN c->>'tax_exempt' ELSE tax_exempt END,
    metadata = CASE WHEN c ? 'metadata' THEN c->'metadata' ELSE metadata END,
    external_id = CASE WHEN c ? 'external_id' THEN c->>'external_id' ELSE external_id END,
    currency = CASE WHEN c ? 'currency' THEN c->>'currency' ELSE currency END
FROM (SELECT $2::jsonb AS c) AS changes
WHERE id = $1
RETURNING customers.*

-- name: deleted
UPDATE customers SET deleted = true, version = $2 WHERE id = $1 RETURNING *

-- name: balance_adjusted
UPDATE customers SET balance = $2, currency = coalesce(currency, $3), version = $4 WHERE id = $1
RETURNING *

-- name: touched
UPDATE customers SET version = $2 WHERE id = $1 RETURNING *
