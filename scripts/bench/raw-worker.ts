// Worker thread of the raw benchmark (raw.ts): one PKCS#11 session, synchronous calls in a plain loop, one latency sample per operation.
import { randomBytes } from 'node:crypto';
import { createRequire, registerHooks } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
// module.exports itself: Node's ESM view of pkcs11js names only PKCS11 (see raw.ts).
import pkcs11 from 'pkcs11js';
import type { WorkerInput, WorkerMessage } from './raw.js';

type Handle = pkcs11.Handle;

// The driver's own templates and constants are imported, so raw signs exactly what the driver
// signs. Node runs runtime/*.ts as they are but (1) does not map their `.js` specifiers onto the
// `.ts` files, and (2) gives their `import * as pkcs11 from 'pkcs11js'` a namespace without the
// CK* constants (esbuild and vitest fill it in). This hook fixes both, in this thread only, so
// the process that embeds runRaw is not affected; the imports below are dynamic so they run
// after it is in place.
const runtimeDir = new URL('../../runtime/', import.meta.url).href;
const pkcs11Url = pathToFileURL(createRequire(import.meta.url).resolve('pkcs11js')).href;
const names = Object.keys(pkcs11).filter((n) => n !== 'default' && /^[A-Za-z_$][\w$]*$/.test(n));
const pkcs11Shim = `import m from ${JSON.stringify(pkcs11Url)}; export default m; export const { ${names.join(', ')} } = m;`;
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === 'pkcs11js') return { url: `data:text/javascript,${encodeURIComponent(pkcs11Shim)}`, shortCircuit: true };
    const url = specifier.startsWith('.') && context.parentURL ? new URL(specifier, context.parentURL).href : '';
    return next(url.startsWith(runtimeDir) && url.endsWith('.js') ? `${url.slice(0, -3)}.ts` : specifier, context);
  },
});
const { keyPairSpec, masterKeyQuery, unwrapTemplate } = await import('../../runtime/hsm/templates.js');
const { CKM_EDDSA } = await import('../../runtime/hsm/mechanisms.js');
const { rvName } = await import('../../runtime/hsm/rv.js');

const input = workerData as WorkerInput;
const port = parentPort!;
const state = new Int32Array(input.control, 0, 1);
const window = new Float64Array(input.control, 8, 2);
const GO = 1; // as in raw.ts (a value import of raw.ts would load it again in this thread)

const post = (m: WorkerMessage, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const now = () => Number(process.hrtime.bigint() - input.base) / 1e6;

const lib = new pkcs11.PKCS11();
let session: Handle | undefined;
/** Objects that outlive one iteration (persistent-sign's key); destroyed before reporting. */
const kept: Handle[] = [];

try {
  lib.load(input.module);
  try {
    lib.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
  } catch (err) {
    // Expected: the main thread (or the first worker) already initialised the shared library.
    if (rvOf(err) !== pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw named(err, 'C_Initialize');
  }
  session = lib.C_OpenSession(Buffer.from(input.slot), pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
  try {
    lib.C_Login(session, pkcs11.CKU_USER, input.pin);
  } catch (err) {
    // Login is per application, not per session: another thread logged us in already.
    if (rvOf(err) !== pkcs11.CKR_USER_ALREADY_LOGGED_IN) throw named(err, 'C_Login');
  }
  const op = setUp(session);
  post({ type: 'ready' });

  Atomics.wait(state, 0, 0);
  const latencies = Atomics.load(state, 0) === GO ? measure(op) : new Float64Array(0);
  while (kept.length > 0) lib.C_DestroyObject(session, kept.pop()!);
  post({ type: 'done', latencies }, [latencies.buffer as ArrayBuffer]);
} catch (err) {
  for (const h of kept) {
    try {
      lib.C_DestroyObject(session!, h);
    } catch {
      /* closing the session destroys it anyway */
    }
  }
  post({ type: 'error', message: (err as Error).message });
}

// The session stays open until the main thread has counted the objects left behind: closing it
// would destroy them and hide a leak.
port.once('message', () => {
  if (session) {
    try {
      lib.C_CloseSession(session);
    } catch {
      /* the main thread finalises the library */
    }
  }
  lib.close();
});

/** Prepares the key material and returns one iteration of the chosen operation. */
function setUp(s: Handle): () => void {
  const { algorithm, op } = input;
  const eddsa = algorithm === 'eddsa-ed25519';
  const signMechanism = { mechanism: eddsa ? CKM_EDDSA : pkcs11.CKM_ECDSA };
  // A 32-byte digest for ECDSA; for Ed25519 the message itself, of the same length.
  const data = randomBytes(32);
  const signature = Buffer.alloc(1024);
  const wrapMechanism = { mechanism: input.wrapMechanism };
  const wrapped = Buffer.alloc(8192); // as keys.ts: room for any key's PKCS#8 plus padding
  const master = () => findMasterKey(s, input.masterKeyLabel);
  // The driver's wrapped keygen (session objects, extractable once for the wrap).
  const wrappedSpec = keyPairSpec(algorithm, { mode: 'wrapped' });
  // The driver's resident posture (never extractable) kept as a session object, as its probe
  // does, so that a crashed run cannot leave a key on the token.
  const residentSpec = keyPairSpec(algorithm, { mode: 'resident', id: randomBytes(16), label: 'raw-bench', probeOnly: true });
  const generate = (spec: typeof wrappedSpec) => call('C_GenerateKeyPair', () => lib.C_GenerateKeyPair(s, spec.mechanism, spec.publicTemplate, spec.privateTemplate));
  const sign = (key: Handle) => {
    call('C_SignInit', () => lib.C_SignInit(s, signMechanism, key));
    call('C_Sign', () => lib.C_Sign(s, data, signature));
  };
  const destroy = (h: Handle) => call('C_DestroyObject', () => lib.C_DestroyObject(s, h));

  switch (op) {
    case 'unwrap-sign': {
      const masterKey = master();
      const pair = generate(wrappedSpec);
      let blob: Buffer;
      try {
        blob = Buffer.from(call('C_WrapKey', () => lib.C_WrapKey(s, wrapMechanism, masterKey, pair.privateKey, wrapped)));
      } finally {
        destroy(pair.privateKey);
        destroy(pair.publicKey);
      }
      const template = unwrapTemplate(algorithm);
      return () => {
        const key = call('C_UnwrapKey', () => lib.C_UnwrapKey(s, wrapMechanism, masterKey, blob, template));
        try {
          sign(key);
        } finally {
          destroy(key);
        }
      };
    }
    case 'persistent-sign': {
      const pair = generate(residentSpec);
      kept.push(pair.privateKey);
      destroy(pair.publicKey);
      return () => sign(pair.privateKey);
    }
    case 'keygen-wrap': {
      // SoftHSM 2.6 cannot wrap Ed25519 keys (the driver keeps them resident): generate and read only.
      const masterKey = eddsa ? undefined : master();
      const spec = eddsa ? residentSpec : wrappedSpec;
      return () => {
        const pair = generate(spec);
        try {
          call('C_GetAttributeValue', () => lib.C_GetAttributeValue(s, pair.publicKey, [{ type: pkcs11.CKA_EC_POINT }]));
          if (masterKey) call('C_WrapKey', () => lib.C_WrapKey(s, wrapMechanism, masterKey, pair.privateKey, wrapped));
        } finally {
          destroy(pair.privateKey);
          destroy(pair.publicKey);
        }
      };
    }
  }
}

/** Runs op from the start signal to the window's end; keeps the latencies of ops that end inside the window. */
function measure(op: () => void): Float64Array {
  const [from, to] = [window[0]!, window[1]!];
  let samples = new Float64Array(16_384);
  let n = 0;
  for (let start = now(); start < to && Atomics.load(state, 0) === GO; start = now()) {
    op();
    const end = now();
    if (end < from || end > to) continue;
    if (n === samples.length) {
      const bigger = new Float64Array(n * 2);
      bigger.set(samples);
      samples = bigger;
    }
    samples[n++] = end - start;
  }
  return samples.slice(0, n);
}

function findMasterKey(s: Handle, label: string): Handle {
  const found = call('C_FindObjects', () => {
    lib.C_FindObjectsInit(s, masterKeyQuery(label));
    try {
      return lib.C_FindObjects(s, 2);
    } finally {
      lib.C_FindObjectsFinal(s);
    }
  });
  if (found.length !== 1) throw new Error(`${found.length} secret keys labelled "${label}" on the token`);
  return found[0]!;
}

/** Runs one PKCS#11 call; a failure names the call and its CKR_ value. */
function call<T>(method: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw named(err, method);
  }
}

function named(err: unknown, method: string): Error {
  const rv = rvOf(err);
  return new Error(`${method} failed: ${rv === undefined ? (err as Error).message : rvName(rv)} (${input.algorithm} ${input.op})`);
}

function rvOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

