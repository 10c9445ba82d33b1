// The poll loop against a fake job API and readiness gate: a gate that closes while a poll is
// being answered must not throw away the job the server has just leased (it would wait for its
// lease to expire; test/faults/sqlite-storage.test.ts saw it on a full disk), while a poll the
// server is holding for lack of work is still ended when the gate closes.
import pino from 'pino';
import { expect, test } from 'vitest';
import type { LeasedJob } from '../../../runtime/driver/job-api.js';
import { pollLoop } from '../../../runtime/driver/loop.js';
import { Semaphore } from '../../../runtime/driver/semaphore.js';

function gate() {
  let controller = new AbortController();
  let ready = true;
  let reopen: () => void = () => {};
  return {
    get ready() {
      return ready;
    },
    get readySignal() {
      if (controller.signal.aborted && ready) controller = new AbortController();
      return controller.signal;
    },
    close() {
      ready = false;
      controller.abort();
    },
    open() {
      ready = true;
      reopen();
    },
    waitUntilReady: (signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        if (ready || signal.aborted) return resolve();
        reopen = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      }),
  };
}

const job = (id: string): LeasedJob => ({ id, kind: 'health', attempt: 1, leaseExpiresAt: new Date(Date.now() + 30_000), input: {} });
const until = async (check: () => boolean) => {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
};

test('a job leased by a poll the gate closes on is run, not dropped', async () => {
  const g = gate();
  const ran: string[] = [];
  const stop = new AbortController();
  let polls = 0;
  const loop = pollLoop(
    {
      api: {
        // The server leases the job the moment the poll arrives; its answer takes a little while.
        next: (_wait, signal) => {
          const n = ++polls;
          if (n === 1) setTimeout(() => g.close(), 5);
          return new Promise((resolve, reject) => {
            const timer = setTimeout(() => resolve(n === 1 ? job('leased-while-closing') : null), 50);
            signal.addEventListener('abort', () => (clearTimeout(timer), reject(new Error('aborted'))), { once: true });
          });
        },
      },
      readiness: g,
      slots: new Semaphore(2),
      runJob: async (j) => void ran.push(j.id),
      setState: () => {},
      log: pino({ level: 'silent' }),
      pollWaitSeconds: 1,
      backoffCapMs: 10,
    },
    stop.signal,
  );
  await until(() => ran.length > 0);
  expect(ran).toEqual(['leased-while-closing']);
  stop.abort();
  g.open();
  await loop;
});

test('a poll the server is holding is still ended when the gate closes', async () => {
  const g = gate();
  const stop = new AbortController();
  let ended = 0;
  const loop = pollLoop(
    {
      api: {
        next: (_wait, signal) =>
          new Promise((_resolve, reject) => {
            signal.addEventListener('abort', () => (ended++, reject(new Error('aborted'))), { once: true });
          }),
      },
      readiness: g,
      slots: new Semaphore(2),
      runJob: async () => {},
      setState: () => {},
      log: pino({ level: 'silent' }),
      pollWaitSeconds: 30,
      backoffCapMs: 10,
    },
    stop.signal,
  );
  await new Promise((r) => setTimeout(r, 20));
  g.close();
  await until(() => ended === 1);
  stop.abort();
  await loop;
});
