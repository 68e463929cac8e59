// Swagger UI in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): the
// real ferroserve binary serves the bundled models; the page must load from the server alone
// (every request elsewhere is refused and counted; .ci/run also runs this in a network namespace
// with nothing but loopback), list every model, and run a prediction with "Execute". A
// screenshot is kept as evidence (SCREENSHOT, default swagger-ui.png).
//
//   FERROSERVE_BIN=target/debug/ferroserve node --test tests/browser/swagger_ui.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const bin = path.resolve(root, process.env.FERROSERVE_BIN ?? 'target/debug/ferroserve');
const shot = path.resolve(process.env.SCREENSHOT ?? path.join(root, 'swagger-ui.png'));
const MODELS = ['breast_cancer', 'diabetes', 'iris', 'wine'];

// Flags for this machine: no sandbox (root), no GPU, and no background traffic of its own.
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function startServer() {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--request-log', 'off', '--log', 'warn'], {
      cwd: root,
      env: Object.fromEntries(Object.entries(process.env)
        .filter(([k]) => k !== 'MODEL_FILE' && k !== 'FERROSERVE_REPOSITORY')),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => { proc.kill(); reject(new Error('ferroserve did not start in 30 s')); }, 30000);
    let out = '';
    let started = false;
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/ferroserve: HTTP listening on (\S+)/);
      if (m && !started) {
        started = true;
        // The ports are bound first and the models load in the background: wait for ready.
        const base = `http://${m[1]}`;
        const poll = async () => {
          const r = await fetch(`${base}/v2/health/ready`).catch(() => null);
          if (r && r.status === 200) { clearTimeout(timer); resolve({ proc, base }); } else setTimeout(poll, 20);
        };
        poll();
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`ferroserve exited (${code})`)); });
  });
}

async function openDocs(context, base, where, outside) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}${where}`);
  await page.waitForSelector('.opblock-tag-section', { timeout: 30000 });
  const tags = await page.$$eval('.opblock-tag', (els) => els.map((e) => e.getAttribute('data-tag')));
  for (const m of MODELS) assert.ok(tags.includes(m), `${where}: model ${m} listed in ${tags}`);
  assert.deepEqual(errors, [], `${where}: no script errors`);
  return page;
}

test('Swagger UI loads from the binary alone, lists the models and runs a prediction', async () => {
  const { proc, base } = await startServer();
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferroserve-chromium-'));
  let context;
  try {
    // A fresh, empty profile (--user-data-dir) for every run.
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: FLAGS,
      headless: true,
      viewport: { width: 1280, height: 1000 },
    });
    const outside = [];
    await context.route('**/*', (route) => {
      const u = new URL(route.request().url());
      if (u.hostname === '127.0.0.1' || u.hostname === 'localhost') return route.continue();
      outside.push(u.href);
      return route.abort();
    });

    // Flasgger's path first, then ferroserve's own.
    const flasgger = await openDocs(context, base, '/apidocs', outside);
    await flasgger.close();
    const page = await openDocs(context, base, '/docs', outside);
    assert.ok(page.url().endsWith('/docs/'), page.url());

    // POST /models/iris/predict: try it out with the example body, execute.
    const op = page.locator('#operations-iris-iris_predict');
    await op.locator('.opblock-summary').first().click();
    const tryIt = op.locator('button.try-out__btn');
    if ((await tryIt.count()) > 0 && (await tryIt.innerText()).includes('Try it out')) await tryIt.click();
    await op.locator('button.execute').click();
    const body = op.locator('.live-responses-table .response-col_description pre.microlight').first();
    await body.waitFor({ timeout: 30000 });
    const text = await body.innerText();
    const answer = JSON.parse(text);
    assert.deepEqual(answer.predictions.slice(0, 3), ['setosa', 'versicolor', 'virginica'], text);
    const status = await op.locator('.live-responses-table .response .response-col_status').first().innerText();
    assert.equal(status.trim(), '200');

    // The evidence: the operation, its request and the live answer.
    await op.locator('.live-responses-table').first().scrollIntoViewIfNeeded();
    await page.evaluate(() => window.scrollBy(0, 250));
    await page.screenshot({ path: shot, fullPage: false });
    assert.deepEqual(outside, [], 'no request left the machine');
    console.log(`screenshot: ${shot}`);
  } finally {
    if (context) await context.close();
    proc.kill('SIGTERM');
    fs.rmSync(userDir, { recursive: true, force: true });
  }
});
