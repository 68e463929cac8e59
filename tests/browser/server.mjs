// What the browser tests share: the real ferroserve binary started on free loopback ports
// (waiting until it is ready), and headless Chromium (Debian's) in a fresh profile whose every
// request to anywhere but this machine is refused and counted.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';
import { chromium } from 'playwright-core';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = path.resolve(root, process.env.FERROSERVE_BIN ?? 'target/debug/ferroserve');

// Flags for this machine: no sandbox (root), no GPU, and no background traffic of its own.
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// Starts `ferroserve serve` with `args` after the loopback and port flags; resolves to
// { proc, base, stop } once /v2/health/ready answers 200 (30 s at most).
export function startServer(args = [], env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--request-log', 'off', '--log', 'warn', ...args], {
      cwd: root,
      env: {
        ...Object.fromEntries(Object.entries(process.env)
          .filter(([k]) => k !== 'MODEL_FILE' && k !== 'FERROSERVE_REPOSITORY' && !k.startsWith('FERROSERVE_API'))),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const timer = setTimeout(() => { proc.kill(); reject(new Error('ferroserve did not start in 30 s')); }, 30000);
    let out = '';
    let started = false;
    const stop = () => new Promise((done) => {
      if (proc.exitCode !== null) return done();
      proc.once('exit', () => done());
      proc.kill('SIGTERM');
    });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/ferroserve: HTTP listening on (\S+)/);
      if (m && !started) {
        started = true;
        // The ports are bound first and the models load in the background: wait for ready.
        const base = `http://${m[1]}`;
        const poll = async () => {
          const r = await fetch(`${base}/v2/health/ready`).catch(() => null);
          if (r && r.status === 200) { clearTimeout(timer); resolve({ proc, base, stop }); } else setTimeout(poll, 20);
        };
        poll();
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); if (!started) reject(new Error(`ferroserve exited (${code})`)); });
  });
}

// Headless Chromium in a fresh, empty profile; `outside` collects every request it was asked to
// make to anywhere but loopback (each refused). Resolves to { context, outside, close }.
export async function launch({ viewport = { width: 1280, height: 1000 } } = {}) {
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferroserve-chromium-'));
  const context = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: FLAGS,
    headless: true,
    viewport,
    acceptDownloads: true,
  });
  const outside = [];
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1' || u.hostname === 'localhost') return route.continue();
    outside.push(u.href);
    return route.abort();
  });
  const close = async () => {
    await context.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  return { context, outside, close };
}
