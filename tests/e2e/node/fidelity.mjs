// stripe-node 23.1.0, unmodified, against ledgerd: the issue-13 fidelity scenario. Prints one JSON document
// of what the SDK saw; tests/e2e/test_fidelity_node.py asserts on it. Env: LEDGER_BASE_URL, LEDGER_KEY.
import Stripe from 'stripe';

const base = new URL(process.env.LEDGER_BASE_URL);
const make = (options = {}) =>
  new Stripe(process.env.LEDGER_KEY, {
    host: base.hostname,
    port: Number(base.port),
    protocol: 'http',
    maxNetworkRetries: 0,
    ...options,
  });
const failure = async (call) => {
  try {
    await call();
    return null;
  } catch (error) {
    return {type: error.type, status: error.statusCode, code: error.code ?? null, param: error.param ?? null,
      message: error.message};
  }
};

const out = {};
const old = make({apiVersion: '2019-09-09'});
const created = await old.customers.create({email: 'node@example.com', account_balance: -500});
out.old = {customer: created, version: created.lastResponse.apiVersion};
const latest = make();
const fetched = await latest.customers.retrieve(created.id, {expand: ['invoice_credit_balance', 'tax', 'tax_ids']});
out.latest = {customer: fetched, version: fetched.lastResponse.apiVersion};
const entry = await latest.customers.createBalanceTransaction(created.id, {amount: 200, expand: ['customer'],
  currency: 'usd'});
out.entry = entry;
const listed = await latest.customers.listBalanceTransactions(created.id, {expand: ['data.customer']});
out.listed_customers = listed.data.map((item) => item.customer.id);
const found = await latest.customers.search({query: "email:'node@example.com'", expand: ['total_count']});
out.search_total = found.total_count;
out.bad_version = await failure(() => make({apiVersion: '2019-09-10'}).customers.create({}));
out.stripe_account = await failure(() => make({stripeAccount: 'acct_1Other'}).customers.list());
out.email = await failure(() => latest.customers.create({email: 'x@com'}));
out.expand = await failure(() => latest.customers.create({expand: ['metadata']}));
out.token = (await latest.customers.create({payment_method: 'pm_card_visa'})).object;
out.count_after = (await latest.customers.list({limit: 100})).data.length;
console.log(JSON.stringify(out));
