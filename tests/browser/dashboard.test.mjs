// The dashboard (/ui/) in headless Chromium against the real ferroserve binary on the bundled
// models, after real traffic: every panel renders the server's data; Load and Unload from the
// page change the server; Try it answers what the API answers (and its "copy as curl" command,
// run by a shell, too); a CSV upload is predicted; a batch job's progress bar moves, and its
// results download; a read-only key sees no control it may not use. Screenshots of every panel
// (laptop and phone widths) go to SCREENSHOTS (default target/dashboard/). Every request the
// page makes must go to the server (others are refused and counted; .ci/run also runs this in a
// network namespace with nothing but loopback).
//
//   FERROSERVE_BIN=target/debug/ferroserve node --test tests/browser/dashboard.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { root, startServer, launch } from './server.mjs';

const shots = path.resolve(process.env.SCREENSHOTS ?? path.join(root, 'target/dashboard'));
fs.mkdirSync(shots, { recursive: true });
const MODELS = ['breast_cancer', 'diabetes', 'iris', 'iris_mlp', 'wine', 'wine_pipeline'];
const BUDGET = 300 * 1024;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

async function json(base, p, init = {}) {
  const r = await fetch(`${base}/${p}`, init);
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// Real traffic for `ms`: iris over the friendly route and v2, wine rows, and some refusals.
async function traffic(base, ms) {
  const end = Date.now() + ms;
  let n = 0;
  const rows = [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]];
  while (Date.now() < end && n < 5000) {
    const row = rows[n % 3];
    await fetch(`${base}/models/iris/predict`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([row, rows[(n + 1) % 3]]) });
    if (n % 5 === 0) {
      await fetch(`${base}/v2/models/iris/infer`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: row }] }) });
    }
    if (n % 17 === 0) await fetch(`${base}/models/iris/predict`, { method: 'POST', body: '{"nope": 1}' });
    n++;
    await sleep(5);
  }
  return n;
}

function sh(cmd) {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', cmd], { timeout: 20000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout)));
  });
}

async function newPage(context, errors) {
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  return page;
}

test('the dashboard shows the models, live traffic, predictions and jobs, and acts on the server', async () => {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'ferroserve-ui-'));
  // Explicit model control, breast_cancer left unloaded for the page to load; the prediction
  // log on, in SQLite, so that the Predictions panel has records to show.
  const { base, stop } = await startServer([
    '--model-control-mode', 'explicit',
    '--load-model', 'iris,diabetes,wine',
    '--prediction-log', 'sqlite', '--data-dir', data,
  ]);
  let browser;
  try {
    browser = await launch();
    const { context, outside } = browser;
    const errors = [];
    const page = await newPage(context, errors);
    const bytes = new Map();
    page.on('response', async (r) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/ui/')) {
        const h = await r.allHeaders();
        bytes.set(u.pathname, { length: Number(h['content-length'] ?? (await r.body()).length), encoding: h['content-encoding'] ?? '' });
      }
    });
    const sent = traffic(base, 6000);

    // Models: every model of the repository, loaded or not, with its state and details.
    await page.goto(`${base}/ui/`);
    await page.waitForSelector('#models-list article[data-model="iris"] dl');
    const names = await page.$$eval('#models-list article', (els) => els.map((e) => e.dataset.model));
    assert.deepEqual(names.slice().sort(), MODELS, 'every model of the repository');
    const iris = page.locator('article[data-model="iris"]');
    assert.equal(await iris.locator('.state').first().getAttribute('data-state'), 'READY');
    const irisText = await iris.innerText();
    for (const want of ['ferroserve_trees', 'classification of 3 classes', 'input FP32 [-1, 4]', 'probabilities FP32 [-1, 3]', 'sepal length (cm)', 'up to 100000 rows a batch']) {
      assert.ok(irisText.includes(want), `iris card shows ${want}: ${irisText}`);
    }
    const bc = page.locator('article[data-model="breast_cancer"]');
    assert.equal(await bc.locator('.state').first().getAttribute('data-state'), 'UNAVAILABLE');
    assert.match(await bc.locator('.reason').innerText(), /not loaded/);
    await page.screenshot({ path: path.join(shots, 'models.png'), fullPage: true });

    // Load breast_cancer from the page: the server loads it.
    await bc.getByRole('button', { name: 'Load breast_cancer' }).click();
    await until('breast_cancer READY on the page', async () => (await bc.locator('.state').first().getAttribute('data-state')) === 'READY');
    assert.equal((await fetch(`${base}/v2/models/breast_cancer/ready`)).status, 200, 'the server loaded breast_cancer');
    // Unload diabetes: a second press confirms.
    const unload = page.locator('article[data-model="diabetes"]').getByRole('button', { name: 'Unload diabetes' });
    await unload.click();
    assert.equal((await fetch(`${base}/v2/models/diabetes/ready`)).status, 200, 'one press does not unload');
    await unload.click();
    await until('diabetes unloaded on the server', async () => (await fetch(`${base}/v2/models/diabetes/ready`)).status !== 200);
    await until('diabetes UNAVAILABLE on the page', async () => (await page.locator('article[data-model="diabetes"] .state').first().getAttribute('data-state')) === 'UNAVAILABLE');

    // Keyboard: the panels are links in the tab order; Enter on one opens it.
    await page.locator('#nav a[data-panel="live"]').focus();
    await page.keyboard.press('Enter');
    await page.waitForSelector('#panel-live:not([hidden])');
    assert.equal(await page.getAttribute('#nav a[data-panel="live"]', 'aria-current'), 'page');

    // Live: the charts follow the traffic, from the server's history.
    await page.goto(`${base}/ui/#/live/iris`);
    await page.waitForSelector('#chart-latency');
    const rps = await until('requests/s above 0 on the chart', async () => {
      const v = Number(await page.getAttribute('#chart-requests', 'data-now'));
      return v > 0 ? v : null;
    });
    const p99 = Number(await page.getAttribute('#chart-latency', 'data-now'));
    assert.ok(p99 > 0, `a p50 latency is drawn (${p99})`);
    for (const id of ['chart-requests', 'chart-latency', 'chart-errors', 'chart-rows', 'chart-batch', 'chart-queue']) {
      const d = await page.getAttribute(`#${id} path`, 'd');
      assert.ok(d && d.length > 4, `${id} has a line`);
      assert.match(await page.getAttribute(`#${id} svg`, 'aria-label'), /now/, `${id} describes itself`);
    }
    await until('the overview counts iris requests', async () => {
      const t = await page.locator('#live-overview tr[data-model="iris"] td').last().innerText();
      return Number(t.replace(/[^0-9]/g, '')) > 0;
    });
    const history = (await json(base, 'v2/models/iris/history?seconds=60')).body;
    assert.ok(history.versions[0].samples.some((s) => s.requests > 0), 'the history route has the traffic');
    await page.screenshot({ path: path.join(shots, 'live.png'), fullPage: true });
    console.log(`live: ${rps} requests/s now, p50 ${p99} ms; ${await sent} traffic rounds sent`);

    // Try it: the form from the model's metadata; the answer is the API's.
    await page.goto(`${base}/ui/#/try/iris`);
    await page.waitForSelector('#try-fields input');
    const fields = await page.$$eval('#try-fields input', (els) => els.map((e) => e.name));
    const card = (await json(base, 'models/iris')).body;
    assert.deepEqual(fields, card.features);
    assert.equal(await page.inputValue('#try-fields input >> nth=0'), String(card.sample_rows[0][0]), 'filled with the first sample row');
    await page.getByRole('button', { name: 'Fill in sample row 2' }).click();
    await page.fill('#try-fields input >> nth=1', '');
    await page.getByRole('button', { name: 'Predict' }).click();
    await page.waitForSelector('#try-label');
    const shown = JSON.parse(await page.locator('#try-raw').textContent());
    const record = Object.fromEntries(card.features.map((f, i) => [f, i === 1 ? null : card.sample_rows[1][i]]));
    const direct = (await json(base, 'models/iris/predict?probabilities=true', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([record]) })).body;
    assert.deepEqual(shown, direct, 'the page shows what the API answers (a missing value included)');
    assert.equal(await page.locator('#try-label').innerText(), direct.predictions[0]);
    assert.equal(await page.locator('#try-probabilities tbody tr').count(), 3);
    // Copy as curl: the command, run by a shell, answers the same.
    await page.getByRole('button', { name: 'Copy as curl' }).click();
    const curl = await page.locator('#try-curl').textContent();
    assert.match(curl, /curl -X POST .*\/models\/iris\/predict\?probabilities=true/);
    assert.deepEqual(JSON.parse(await sh(`${curl} -s`)), direct, 'the curl command answers the same');
    // A number that is not one is refused on the page, naming the field.
    await page.fill('#try-fields input >> nth=2', 'abc');
    await page.getByRole('button', { name: 'Predict' }).click();
    await page.waitForSelector('#try-answer [role="alert"]');
    assert.match(await page.locator('#try-answer').innerText(), /petal length \(cm\)/);
    assert.equal(await page.getAttribute('#try-fields input >> nth=2', 'aria-invalid'), 'true');
    // A CSV file: every row predicted, as the API predicts it.
    const csvPath = path.join(root, 'examples/requests/iris.csv');
    await page.setInputFiles('#try-csv', csvPath);
    await page.waitForSelector('#try-csv-table tbody tr');
    const csvShown = await page.$$eval('#try-csv-table td.prediction', (els) => els.map((e) => e.textContent));
    const csvDirect = (await json(base, 'models/iris/predict', { method: 'POST', headers: { 'Content-Type': 'text/csv' }, body: fs.readFileSync(csvPath) })).body;
    assert.deepEqual(csvShown, csvDirect.predictions);
    await page.screenshot({ path: path.join(shots, 'try-it.png'), fullPage: true });

    // Predictions: the records of the traffic above, with classes over time.
    await page.goto(`${base}/ui/#/predictions/iris`);
    const legend = await until('the histogram legend', async () => {
      const items = await page.$$eval('#pred-legend li', (els) => els.map((e) => [e.dataset.category, Number(e.dataset.count)]));
      return items.length && items.some(([, n]) => n > 0) ? items : null;
    });
    assert.deepEqual(legend.map(([c]) => c).slice(0, 3), ['setosa', 'versicolor', 'virginica'], JSON.stringify(legend));
    assert.ok(await page.locator('#pred-table tbody tr').count() > 0);
    assert.ok(await page.locator('#pred-chart rect').count() > 0, 'bars are drawn');
    // The filter: errors only.
    await page.selectOption('#pred-outcome', 'error');
    await until('only refused requests', async () => {
      const st = await page.$$eval('#pred-table tbody tr td:nth-child(5) .state', (els) => els.map((e) => e.textContent));
      return st.length > 0 && st.every((s) => s !== '200');
    });
    await page.selectOption('#pred-outcome', '');
    await until('answered requests again', async () => (await page.locator('#pred-table tbody .state', { hasText: '200' }).count()) > 0);
    await page.screenshot({ path: path.join(shots, 'predictions.png') });
    // Newest first, 50 at a time.
    assert.equal(await page.locator('#pred-table tbody tr').count(), 50);
    await page.locator('#pred-more').click();
    assert.ok(await page.locator('#pred-table tbody tr').count() > 50, 'more on request');

    // Jobs: a file of 40,000 rows in chunks of 20; the bar moves, then the results download.
    const rows = fs.readFileSync(csvPath, 'utf8').trim().split('\n');
    const big = path.join(data, 'rows.csv');
    const N = 40000;
    fs.writeFileSync(big, Array.from({ length: N }, (_, i) => rows[i % rows.length]).join('\n') + '\n');
    await page.goto(`${base}/ui/#/jobs`);
    await page.waitForSelector('#jobs-table tbody tr');
    await page.selectOption('#job-model', 'iris');
    await page.setInputFiles('#job-file', big);
    await page.fill('#job-chunk', '20');
    await page.getByRole('button', { name: 'Submit' }).click();
    const bar = page.locator('#jobs-table tr[data-job] [role="progressbar"]').first();
    await bar.waitFor();
    const seen = [];
    const end = Date.now() + 180000;
    let state = '';
    let midShot = false;
    while (Date.now() < end) {
      const v = Number(await bar.getAttribute('aria-valuenow'));
      if (seen[seen.length - 1] !== v) seen.push(v);
      if (!midShot && v > 0 && v < N) { await page.screenshot({ path: path.join(shots, 'jobs-running.png'), fullPage: true }); midShot = true; }
      state = await page.locator('#jobs-table tr[data-job] .state').first().getAttribute('data-state');
      if (state === 'succeeded' && v === N) break;
      await sleep(100);
    }
    assert.equal(state, 'succeeded', `the job finished (${seen})`);
    assert.ok(seen.some((v) => v > 0 && v < N), `the bar moved through the job: ${seen}`);
    assert.deepEqual(seen, seen.slice().sort((a, b) => a - b), `the bar only moves forward: ${seen}`);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#jobs-table tr[data-job]').first().getByRole('button', { name: /Download/ }).click(),
    ]);
    const lines = fs.readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(lines.length, N, 'every row answered');
    assert.equal(JSON.parse(lines[0]).row, 0);
    await page.screenshot({ path: path.join(shots, 'jobs.png'), fullPage: true });
    // Cancel: a second job stopped from the page.
    await page.setInputFiles('#job-file', big);
    await page.fill('#job-chunk', '10');
    await page.getByRole('button', { name: 'Submit' }).click();
    await until('a second job', async () => (await page.locator('#jobs-table tr[data-job]').count()) === 2);
    const second = page.locator('#jobs-table tr[data-job]').first();
    const id = await second.getAttribute('data-job');
    await second.getByRole('button', { name: `Cancel job ${id}` }).click();
    const after = await until('the job cancelled on the server', async () => {
      const j = (await json(base, `jobs/${id}`)).body;
      return j.state === 'cancelled' ? j : null;
    });
    assert.ok(after.rows_done < N, 'cancelled before the end');
    await until('cancelled on the page', async () => (await second.locator('.state').getAttribute('data-state')) === 'cancelled');

    // A phone: the same panels in 390 px, nothing wider than the screen.
    const phone = await newPage(context, errors);
    await phone.setViewportSize({ width: 390, height: 844 });
    for (const panel of ['models', 'live/iris', 'try/iris', 'jobs']) {
      await phone.goto(`${base}/ui/#/${panel}`);
      await phone.waitForSelector(`#panel-${panel.split('/')[0]}:not([hidden])`);
      await sleep(500);
      const [sw, w] = await phone.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      await phone.screenshot({ path: path.join(shots, `phone-${panel.split('/')[0]}.png`), fullPage: true });
      assert.ok(sw <= w + 1, `${panel}: no sideways scrolling on a phone (${sw} > ${w})`);
    }

    // Every form control has a name a screen reader can say.
    const unnamed = await page.evaluate(() => [...document.querySelectorAll('input, select, button')]
      .filter((el) => !el.hidden && el.type !== 'hidden')
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
      .map((el) => el.id || el.outerHTML.slice(0, 60)));
    assert.deepEqual(unnamed, [], 'unnamed controls');

    // What the page weighs as sent: compressed, within the budget.
    const total = [...bytes.values()].reduce((a, b) => a + b.length, 0);
    console.log(`dashboard files as sent: ${[...bytes].map(([p, b]) => `${p} ${b.length} B ${b.encoding}`).join(', ')}; total ${total} B (budget ${BUDGET})`);
    assert.ok([...bytes.values()].every((b) => b.encoding === 'gzip'), 'sent compressed');
    assert.ok(total > 0 && total <= BUDGET, `${total} bytes`);

    assert.deepEqual(errors, [], 'no script errors');
    assert.deepEqual(outside, [], 'no request left the machine');
    console.log(`screenshots: ${shots}`);
  } finally {
    if (browser) await browser.close();
    await stop();
    fs.rmSync(data, { recursive: true, force: true });
  }
});

test('with keys: the page asks for one, and shows a read-only key no control it may not use', async () => {
  const key = (k) => createHash('sha256').update(k).digest('hex');
  const { base, stop } = await startServer(['--model-control-mode', 'explicit', '--load-model', 'iris'], {
    FERROSERVE_API_KEYS: `viewer:read:${key('read-key-123')},ops:admin:${key('admin-key-456')}`,
  });
  let browser;
  try {
    browser = await launch();
    const { context, outside } = browser;
    const errors = [];
    const page = await newPage(context, errors);
    await page.goto(`${base}/ui/`);
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.locator('#banner').innerText(), /sign in/i);
    assert.match(await page.locator('#who').innerText(), /not signed in/);
    await page.screenshot({ path: path.join(shots, 'keys-signed-out.png') });

    // A read-only key: the models, and no Load, Unload or Reload.
    await page.fill('#key', 'read-key-123');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('article[data-model="iris"] dl');
    assert.match(await page.locator('#who').innerText(), /signed in as viewer \(read\)/);
    assert.equal(await page.locator('#models-list button').count(), 0, 'no control for a read key');
    assert.match(await page.locator('#models-control').innerText(), /manage scope/);
    // Try it with that key: the server refuses, and the page says why.
    await page.goto(`${base}/ui/#/try/iris`);
    await page.waitForSelector('#try-fields input');
    await page.getByRole('button', { name: 'Predict' }).click();
    await page.waitForSelector('#try-answer [role="alert"]');
    assert.match(await page.locator('#try-answer').innerText(), /needs the `infer` scope/);

    // An admin key: the controls are there.
    await page.goto(`${base}/ui/#/models`);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.fill('#key', 'admin-key-456');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('article[data-model="wine"] button');
    assert.equal(await page.locator('article[data-model="wine"]').getByRole('button', { name: 'Load wine' }).count(), 1);
    // A wrong key is refused and forgotten.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.fill('#key', 'wrong-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await until('the key refused and forgotten', async () => /the key is forgotten/.test(await page.locator('#toast').innerText()));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('ferroserve.key')), null);
    assert.match(await page.locator('#who').innerText(), /not signed in/);
    assert.deepEqual(errors.filter((e) => !/401|403/.test(e)), [], 'no script errors');
    assert.deepEqual(outside, [], 'no request left the machine');
  } finally {
    if (browser) await browser.close();
    await stop();
  }
});
