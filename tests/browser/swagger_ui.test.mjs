// Swagger UI in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): the
// real ferroserve binary serves the bundled models; the page must load from the server alone
// (every request elsewhere is refused and counted; .ci/run also runs this in a network namespace
// with nothing but loopback), list every model, and run a prediction with "Execute". A
// screenshot is kept as evidence (SCREENSHOT, default swagger-ui.png).
//
//   FERROSERVE_BIN=target/debug/ferroserve node --test tests/browser/swagger_ui.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { root, startServer, launch } from './server.mjs';

const shot = path.resolve(process.env.SCREENSHOT ?? path.join(root, 'swagger-ui.png'));
const MODELS = ['breast_cancer', 'diabetes', 'iris', 'wine'];

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
  const { base, stop } = await startServer();
  let browser;
  try {
    // A fresh, empty profile for every run.
    browser = await launch();
    const { context, outside } = browser;

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
    if (browser) await browser.close();
    await stop();
  }
});
