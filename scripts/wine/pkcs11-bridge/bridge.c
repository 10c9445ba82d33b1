/* Windows-ABI PKCS#11 module for Wine that forwards every call to a Linux module (SoftHSM2), so a Windows build can be tested against a real token. */

/*
 * Built with plain gcc and linked by winegcc into a winelib DLL (see ../build-bridge.sh).
 * The two ABIs differ in three ways, and all the code below exists for them:
 *   - CK_ULONG is 32 bits on Windows (LLP64) and 64 bits on Linux (LP64), so every struct,
 *     array and attribute value made of CK_ULONGs is copied, never cast;
 *   - Windows cryptoki structs are packed to 1 byte, so pointers inside them are unaligned;
 *   - Windows callers use the ms_abi calling convention.
 * Every conversion uses per-call memory only: pkcs11js calls from several threads at once.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"

#define DEFAULT_TARGET "/usr/lib/softhsm/libsofthsm2.so"

/* ---- loading the Linux module ---- */

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static w_rv load_rv = CKR_GENERAL_ERROR;
static lx_function_list *lx; /* set once, before C_GetFunctionList first returns */
static w_function_list w_list;

static void fill_w_list(void);

static void load_target(void) {
  const char *path = getenv("PKCS11_BRIDGE_TARGET");
  if (!path || !*path) path = DEFAULT_TARGET;
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "pkcs11-bridge: cannot load %s: %s\n", path, dlerror());
    return;
  }
  lx_ulong (*get)(lx_function_list **) = (lx_ulong(*)(lx_function_list **))dlsym(lib, "C_GetFunctionList");
  lx_function_list *list = NULL;
  lx_ulong rv = get ? get(&list) : CKR_GENERAL_ERROR;
  if (rv != CKR_OK || !list) {
    fprintf(stderr, "pkcs11-bridge: %s: C_GetFunctionList failed (rv 0x%lx)\n", path, rv);
    return;
  }
  lx = list;
  w_list.version = list->version;
  fill_w_list();
  load_rv = CKR_OK;
}

static w_rv ensure_loaded(void) {
  pthread_once(&load_once, load_target);
  return load_rv;
}

static w_rv no_target(void) { return lx ? CKR_FUNCTION_NOT_SUPPORTED : CKR_CRYPTOKI_NOT_INITIALIZED; }

/* Declares t_, the Linux entry point, or returns what a caller should see when it is absent. */
#define TARGET(name, type)                               \
  __typeof__(type) t_ = lx ? (type)lx->fn[F_##name] : NULL; \
  if (!t_) return no_target()

/* ---- scalar conversions ---- */

static w_ulong narrow(lx_ulong v) { return v > 0xFFFFFFFFul ? W_UNAVAILABLE : (w_ulong)v; }
static w_rv rv32(lx_ulong rv) { return rv > 0xFFFFFFFFul ? CKR_GENERAL_ERROR : (w_rv)rv; }
static lx_ulong len_in(const w_ulong *p) { return p ? *p : 0; }
static void len_out(w_ulong *p, lx_ulong v) { if (p) *p = narrow(v); }

/* Handles are 32 bits on the Windows side, so a wider one fails the call. v is read through a
 * pointer because the call that fills it is handle_out's own first argument. */
static w_rv handle_out(lx_ulong rv, w_ulong *dst, const lx_ulong *v) {
  if (rv != CKR_OK || !dst) return rv32(rv);
  if (*v > 0xFFFFFFFFul) return CKR_GENERAL_ERROR;
  *dst = (w_ulong)*v;
  return CKR_OK;
}

static w_rv ids_out(w_ulong *dst, const lx_ulong *src, lx_ulong n) {
  for (lx_ulong i = 0; i < n; i++) {
    if (src[i] > 0xFFFFFFFFul) return CKR_GENERAL_ERROR;
    dst[i] = (w_ulong)src[i];
  }
  return CKR_OK;
}

/* ---- per-call memory for templates ---- */

struct block { struct block *next; max_align_t data[]; };
struct arena { struct block *head; };

static void *arena_alloc(struct arena *a, size_t n) {
  struct block *b = malloc(sizeof *b + (n ? n : 1));
  if (!b) return NULL;
  b->next = a->head;
  a->head = b;
  return b->data;
}

static void arena_free(struct arena *a) {
  while (a->head) { struct block *b = a->head; a->head = b->next; free(b); }
}

/* ---- attributes ---- */

enum { A_BYTES, A_ULONG, A_ULONG_ARRAY, A_TEMPLATE };

/* Attributes whose value is a CK_ULONG (or an array of them, or a nested template). */
static int attr_kind(w_ulong type) {
  switch (type) {
  case 0x000: case 0x080: case 0x087: case 0x088: case 0x08C: case 0x100: case 0x121:
  case 0x133: case 0x134: case 0x160: case 0x161: case 0x166: case 0x201: case 0x220:
  case 0x221: case 0x222: case 0x224: case 0x225: case 0x226: case 0x227: case 0x300:
  case 0x400: case 0x401: case 0x402: case 0x403: case 0x404: case 0x406: case 0x500:
  case 0x601:
    return A_ULONG;
  case 0x40000600: /* CKA_ALLOWED_MECHANISMS */
    return A_ULONG_ARRAY;
  case 0x40000211: case 0x40000212: case 0x40000213: /* CKA_{WRAP,UNWRAP,DERIVE}_TEMPLATE */
    return A_TEMPLATE;
  default:
    return A_BYTES;
  }
}

/* A template the module reads (C_CreateObject, C_FindObjectsInit, key generation, ...). */
static w_rv tmpl_in(struct arena *a, const w_attr *w, w_ulong n, lx_attr **out, int depth) {
  *out = NULL;
  if (!w) return CKR_OK; /* the module judges a NULL template */
  if (depth > 2) return CKR_TEMPLATE_INCONSISTENT;
  lx_attr *l = arena_alloc(a, (size_t)n * sizeof *l);
  if (!l) return CKR_HOST_MEMORY;
  for (w_ulong i = 0; i < n; i++) {
    w_ulong len = w[i].ulValueLen;
    uint8_t *v = w[i].pValue;
    l[i] = (lx_attr){ w[i].type, v, len };
    if (!v) continue;
    switch (attr_kind(w[i].type)) {
    case A_ULONG:
    case A_ULONG_ARRAY: {
      if (len % 4) break; /* not a Windows CK_ULONG: the module will judge it as it is */
      lx_ulong *x = arena_alloc(a, len / 4 * sizeof *x);
      if (!x) return CKR_HOST_MEMORY;
      for (w_ulong j = 0; j < len / 4; j++) { uint32_t u; memcpy(&u, v + 4 * j, 4); x[j] = u; }
      l[i].pValue = x;
      l[i].ulValueLen = len / 4 * sizeof *x;
      break;
    }
    case A_TEMPLATE: {
      if (len % sizeof(w_attr)) break;
      lx_attr *nested;
      w_rv rv = tmpl_in(a, (const w_attr *)v, len / sizeof(w_attr), &nested, depth + 1);
      if (rv != CKR_OK) return rv;
      l[i].pValue = nested;
      l[i].ulValueLen = len / sizeof(w_attr) * sizeof(lx_attr);
      break;
    }
    }
  }
  *out = l;
  return CKR_OK;
}

/* C_GetAttributeValue, step 1: Linux-sized buffers for the values the caller asked for. */
static w_rv tmpl_out_prepare(struct arena *a, const w_attr *w, w_ulong n, lx_attr **out, int depth) {
  *out = NULL;
  if (!w) return CKR_OK;
  if (depth > 2) return CKR_TEMPLATE_INCONSISTENT;
  lx_attr *l = arena_alloc(a, (size_t)n * sizeof *l);
  if (!l) return CKR_HOST_MEMORY;
  for (w_ulong i = 0; i < n; i++) {
    w_ulong len = w[i].ulValueLen;
    l[i] = (lx_attr){ w[i].type, w[i].pValue, len };
    if (!w[i].pValue) continue;
    switch (attr_kind(w[i].type)) {
    case A_ULONG:
    case A_ULONG_ARRAY: {
      /* A buffer under 4 bytes keeps its short length so the module reports it too small. */
      lx_ulong size = len < 4 ? len : (lx_ulong)(len / 4) * sizeof(lx_ulong);
      if (!(l[i].pValue = arena_alloc(a, size))) return CKR_HOST_MEMORY;
      l[i].ulValueLen = size;
      break;
    }
    case A_TEMPLATE: {
      lx_attr *nested;
      w_rv rv = tmpl_out_prepare(a, w[i].pValue, len / sizeof(w_attr), &nested, depth + 1);
      if (rv != CKR_OK) return rv;
      l[i].pValue = nested;
      l[i].ulValueLen = len / sizeof(w_attr) * sizeof(lx_attr);
      break;
    }
    }
  }
  *out = l;
  return CKR_OK;
}

/* C_GetAttributeValue, step 2: values and lengths back into the caller's template. */
static void tmpl_out_finish(w_attr *w, const lx_attr *l, w_ulong n) {
  for (w_ulong i = 0; i < n; i++) {
    lx_ulong len = l[i].ulValueLen;
    uint8_t *dst = w[i].pValue;
    w[i].type = narrow(l[i].type); /* inside a nested template the module fills in the types */
    if (len == LX_UNAVAILABLE) { w[i].ulValueLen = W_UNAVAILABLE; continue; }
    switch (attr_kind(w[i].type)) {
    case A_ULONG:
    case A_ULONG_ARRAY:
      if (len % sizeof(lx_ulong)) { w[i].ulValueLen = narrow(len); break; }
      if (dst) {
        for (lx_ulong j = 0; j < len / sizeof(lx_ulong); j++) {
          uint32_t u = narrow(((const lx_ulong *)l[i].pValue)[j]);
          memcpy(dst + 4 * j, &u, 4);
        }
      }
      w[i].ulValueLen = narrow(len / sizeof(lx_ulong) * 4);
      break;
    case A_TEMPLATE:
      if (dst && l[i].pValue) tmpl_out_finish((w_attr *)dst, l[i].pValue, len / sizeof(lx_attr));
      w[i].ulValueLen = narrow(len / sizeof(lx_attr) * sizeof(w_attr));
      break;
    default:
      w[i].ulValueLen = narrow(len);
    }
  }
}

/* ---- mechanisms ---- */

enum { P_RAW, P_ULONG, P_PSS, P_OAEP, P_GCM, P_CTR, P_ECDH1 };

static int param_kind(w_ulong mech) {
  switch (mech) {
  case 0x0D: case 0x0E: case 0x43: case 0x44: case 0x45: case 0x47:
  case 0x63: case 0x64: case 0x65: case 0x67:
    return P_PSS;
  case 0x09: return P_OAEP;
  case 0x1087: return P_GCM;
  case 0x1086: return P_CTR;
  case 0x1050: case 0x1051: return P_ECDH1;
  /* *_MAC_GENERAL and *_HMAC_GENERAL take the MAC length; these two take a handle or bit index */
  case 0x4A: case 0x4E: case 0x52: case 0x104: case 0x124: case 0x135: case 0x137: case 0x144:
  case 0x202: case 0x212: case 0x222: case 0x232: case 0x242: case 0x252: case 0x257:
  case 0x262: case 0x272: case 0x2B2: case 0x2B7: case 0x2C2: case 0x2D2: case 0x304:
  case 0x314: case 0x324: case 0x334: case 0x344: case 0x554: case 0x564: case 0x654:
  case 0x1084: case 0x108B: case 0x360: case 0x365:
    return P_ULONG;
  default:
    return P_RAW;
  }
}

struct mech_conv {
  lx_mech m;
  union { lx_ulong ul; lx_pss pss; lx_oaep oaep; lx_gcm gcm; lx_ctr ctr; lx_ecdh1 ecdh1; } p;
};

/* Reads a packed Windows parameter struct of exactly its own size into x, or fails the call. */
#define READ_PARAM(x)                                                   \
  if (len != sizeof(x)) return CKR_MECHANISM_PARAM_INVALID;             \
  memcpy(&(x), w.pParameter, sizeof(x))
#define USE_PARAM(member)                                               \
  c->m.pParameter = &c->p.member;                                       \
  c->m.ulParameterLen = sizeof c->p.member

/* Returns the mechanism to hand the module in *out (NULL when the caller gave none). */
static w_rv mech_in(const w_mech *wp, struct mech_conv *c, lx_mech **out) {
  *out = NULL;
  if (!wp) return CKR_OK;
  w_mech w;
  memcpy(&w, wp, sizeof w);
  c->m = (lx_mech){ w.mechanism, w.pParameter, w.ulParameterLen };
  *out = &c->m;
  if (!w.pParameter) return CKR_OK;
  w_ulong len = w.ulParameterLen;
  switch (param_kind(w.mechanism)) {
  case P_ULONG: {
    uint32_t x;
    READ_PARAM(x);
    c->p.ul = x;
    USE_PARAM(ul);
    break;
  }
  case P_PSS: {
    w_pss x;
    READ_PARAM(x);
    c->p.pss = (lx_pss){ x.hashAlg, x.mgf, x.sLen };
    USE_PARAM(pss);
    break;
  }
  case P_OAEP: {
    w_oaep x;
    READ_PARAM(x);
    c->p.oaep = (lx_oaep){ x.hashAlg, x.mgf, x.source, x.pSourceData, x.ulSourceDataLen };
    USE_PARAM(oaep);
    break;
  }
  case P_GCM:
    if (len == sizeof(w_gcm_short)) {
      w_gcm_short x;
      READ_PARAM(x);
      c->p.gcm = (lx_gcm){ x.pIv, x.ulIvLen, (lx_ulong)x.ulIvLen * 8, x.pAAD, x.ulAADLen, x.ulTagBits };
    } else {
      w_gcm x;
      READ_PARAM(x);
      c->p.gcm = (lx_gcm){ x.pIv, x.ulIvLen, x.ulIvBits, x.pAAD, x.ulAADLen, x.ulTagBits };
    }
    USE_PARAM(gcm);
    break;
  case P_CTR: {
    w_ctr x;
    READ_PARAM(x);
    c->p.ctr.ulCounterBits = x.ulCounterBits;
    memcpy(c->p.ctr.cb, x.cb, sizeof x.cb);
    USE_PARAM(ctr);
    break;
  }
  case P_ECDH1: {
    w_ecdh1 x;
    READ_PARAM(x);
    c->p.ecdh1 = (lx_ecdh1){ x.kdf, x.ulSharedDataLen, x.pSharedData, x.ulPublicDataLen, x.pPublicData };
    USE_PARAM(ecdh1);
    break;
  }
  default:
    break; /* a byte string (IV, EC parameters, ...) means the same on both sides */
  }
  return CKR_OK;
}

#define MECH(wp)                                   \
  struct mech_conv mc_;                            \
  lx_mech *m_;                                     \
  do {                                             \
    w_rv mrv_ = mech_in((wp), &mc_, &m_);          \
    if (mrv_ != CKR_OK) return mrv_;               \
  } while (0)

/* ---- general purpose ---- */

typedef w_rv(WINAPI *w_create_mutex_fn)(void **);
typedef w_rv(WINAPI *w_mutex_fn)(void *);
/* The caller's mutex callbacks are Windows code: the module calls them through these. */
static struct { w_create_mutex_fn create; w_mutex_fn destroy, lock, unlock; } app_mutex;
static lx_ulong lx_create_mutex(void **m) { return app_mutex.create(m); }
static lx_ulong lx_destroy_mutex(void *m) { return app_mutex.destroy(m); }
static lx_ulong lx_lock_mutex(void *m) { return app_mutex.lock(m); }
static lx_ulong lx_unlock_mutex(void *m) { return app_mutex.unlock(m); }

w_rv WINAPI b_Initialize(const w_init_args *args) {
  w_rv rv = ensure_loaded();
  if (rv != CKR_OK) return rv;
  TARGET(Initialize, lx_ulong(*)(lx_init_args *));
  if (!args) return rv32(t_(NULL));
  w_init_args w;
  memcpy(&w, args, sizeof w);
  app_mutex.create = (w_create_mutex_fn)w.CreateMutex;
  app_mutex.destroy = (w_mutex_fn)w.DestroyMutex;
  app_mutex.lock = (w_mutex_fn)w.LockMutex;
  app_mutex.unlock = (w_mutex_fn)w.UnlockMutex;
  lx_init_args l = {
    w.CreateMutex ? (void *)lx_create_mutex : NULL, w.DestroyMutex ? (void *)lx_destroy_mutex : NULL,
    w.LockMutex ? (void *)lx_lock_mutex : NULL, w.UnlockMutex ? (void *)lx_unlock_mutex : NULL,
    w.flags, w.pReserved,
  };
  return rv32(t_(&l));
}

w_rv WINAPI b_Finalize(void *reserved) {
  TARGET(Finalize, lx_ulong(*)(void *));
  return rv32(t_(reserved));
}

w_rv WINAPI b_GetInfo(w_info *p) {
  TARGET(GetInfo, lx_ulong(*)(lx_info *));
  lx_info l;
  lx_ulong rv = t_(p ? &l : NULL);
  if (rv == CKR_OK && p) {
    p->cryptokiVersion = l.cryptokiVersion;
    memcpy(p->manufacturerID, l.manufacturerID, 32);
    p->flags = narrow(l.flags);
    memcpy(p->libraryDescription, l.libraryDescription, 32);
    p->libraryVersion = l.libraryVersion;
  }
  return rv32(rv);
}

w_rv WINAPI b_GetFunctionList(w_function_list **pp) {
  if (!pp) return CKR_ARGUMENTS_BAD;
  w_rv rv = ensure_loaded();
  if (rv == CKR_OK) *pp = &w_list;
  return rv;
}

w_rv WINAPI b_WaitForSlotEvent(w_ulong flags, w_ulong *slot, void *reserved) {
  TARGET(WaitForSlotEvent, lx_ulong(*)(lx_ulong, lx_ulong *, void *));
  lx_ulong s = 0;
  return handle_out(t_(flags, slot ? &s : NULL, reserved), slot, &s);
}

/* ---- slots and tokens ---- */

w_rv WINAPI b_GetSlotList(uint8_t present, w_ulong *list, w_ulong *count) {
  TARGET(GetSlotList, lx_ulong(*)(uint8_t, lx_ulong *, lx_ulong *));
  if (!count) return rv32(t_(present, NULL, NULL));
  lx_ulong n = *count, *tmp = NULL;
  if (list && !(tmp = calloc(n ? n : 1, sizeof *tmp))) return CKR_HOST_MEMORY;
  lx_ulong rv = t_(present, tmp, &n);
  if (rv == CKR_OK && list) rv = ids_out(list, tmp, n);
  if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) *count = narrow(n);
  free(tmp);
  return rv32(rv);
}

w_rv WINAPI b_GetSlotInfo(w_ulong slot, w_slot_info *p) {
  TARGET(GetSlotInfo, lx_ulong(*)(lx_ulong, lx_slot_info *));
  lx_slot_info l;
  lx_ulong rv = t_(slot, p ? &l : NULL);
  if (rv == CKR_OK && p) {
    memcpy(p->slotDescription, l.slotDescription, 64);
    memcpy(p->manufacturerID, l.manufacturerID, 32);
    p->flags = narrow(l.flags);
    p->hardwareVersion = l.hardwareVersion;
    p->firmwareVersion = l.firmwareVersion;
  }
  return rv32(rv);
}

w_rv WINAPI b_GetTokenInfo(w_ulong slot, w_token_info *p) {
  TARGET(GetTokenInfo, lx_ulong(*)(lx_ulong, lx_token_info *));
  lx_token_info l;
  lx_ulong rv = t_(slot, p ? &l : NULL);
  if (rv == CKR_OK && p) {
    memcpy(p->label, l.label, 32);
    memcpy(p->manufacturerID, l.manufacturerID, 32);
    memcpy(p->model, l.model, 16);
    memcpy(p->serialNumber, l.serialNumber, 16);
    p->flags = narrow(l.flags);
    p->ulMaxSessionCount = narrow(l.ulMaxSessionCount);
    p->ulSessionCount = narrow(l.ulSessionCount);
    p->ulMaxRwSessionCount = narrow(l.ulMaxRwSessionCount);
    p->ulRwSessionCount = narrow(l.ulRwSessionCount);
    p->ulMaxPinLen = narrow(l.ulMaxPinLen);
    p->ulMinPinLen = narrow(l.ulMinPinLen);
    p->ulTotalPublicMemory = narrow(l.ulTotalPublicMemory);
    p->ulFreePublicMemory = narrow(l.ulFreePublicMemory);
    p->ulTotalPrivateMemory = narrow(l.ulTotalPrivateMemory);
    p->ulFreePrivateMemory = narrow(l.ulFreePrivateMemory);
    p->hardwareVersion = l.hardwareVersion;
    p->firmwareVersion = l.firmwareVersion;
    memcpy(p->utcTime, l.utcTime, 16);
  }
  return rv32(rv);
}

w_rv WINAPI b_GetMechanismList(w_ulong slot, w_ulong *list, w_ulong *count) {
  TARGET(GetMechanismList, lx_ulong(*)(lx_ulong, lx_ulong *, lx_ulong *));
  if (!count) return rv32(t_(slot, NULL, NULL));
  lx_ulong n = *count, *tmp = NULL;
  if (list && !(tmp = calloc(n ? n : 1, sizeof *tmp))) return CKR_HOST_MEMORY;
  lx_ulong rv = t_(slot, tmp, &n);
  if (rv == CKR_OK && list) rv = ids_out(list, tmp, n);
  if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) *count = narrow(n);
  free(tmp);
  return rv32(rv);
}

w_rv WINAPI b_GetMechanismInfo(w_ulong slot, w_ulong type, w_mech_info *p) {
  TARGET(GetMechanismInfo, lx_ulong(*)(lx_ulong, lx_ulong, lx_mech_info *));
  lx_mech_info l;
  lx_ulong rv = t_(slot, type, p ? &l : NULL);
  if (rv == CKR_OK && p) {
    p->ulMinKeySize = narrow(l.ulMinKeySize);
    p->ulMaxKeySize = narrow(l.ulMaxKeySize);
    p->flags = narrow(l.flags);
  }
  return rv32(rv);
}

w_rv WINAPI b_InitToken(w_ulong slot, uint8_t *pin, w_ulong pinLen, uint8_t *label) {
  TARGET(InitToken, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong, uint8_t *));
  return rv32(t_(slot, pin, pinLen, label));
}

/* ---- sessions ---- */

/* The Notify callback is not forwarded (SoftHSM never calls it). */
w_rv WINAPI b_OpenSession(w_ulong slot, w_ulong flags, void *app, void *notify, w_ulong *session) {
  (void)notify;
  TARGET(OpenSession, lx_ulong(*)(lx_ulong, lx_ulong, void *, void *, lx_ulong *));
  lx_ulong h = 0;
  return handle_out(t_(slot, flags, app, NULL, session ? &h : NULL), session, &h);
}

w_rv WINAPI b_GetSessionInfo(w_ulong session, w_session_info *p) {
  TARGET(GetSessionInfo, lx_ulong(*)(lx_ulong, lx_session_info *));
  lx_session_info l;
  lx_ulong rv = t_(session, p ? &l : NULL);
  if (rv == CKR_OK && p) {
    p->slotID = narrow(l.slotID);
    p->state = narrow(l.state);
    p->flags = narrow(l.flags);
    p->ulDeviceError = narrow(l.ulDeviceError);
  }
  return rv32(rv);
}

w_rv WINAPI b_Login(w_ulong session, w_ulong user, uint8_t *pin, w_ulong pinLen) {
  TARGET(Login, lx_ulong(*)(lx_ulong, lx_ulong, uint8_t *, lx_ulong));
  return rv32(t_(session, user, pin, pinLen));
}

w_rv WINAPI b_SetOperationState(w_ulong session, uint8_t *state, w_ulong len, w_ulong encKey, w_ulong authKey) {
  TARGET(SetOperationState, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong, lx_ulong, lx_ulong));
  return rv32(t_(session, state, len, encKey, authKey));
}

/* ---- objects ---- */

w_rv WINAPI b_CreateObject(w_ulong session, w_attr *tmpl, w_ulong n, w_ulong *obj) {
  TARGET(CreateObject, lx_ulong(*)(lx_ulong, lx_attr *, lx_ulong, lx_ulong *));
  struct arena a = { 0 };
  lx_attr *l;
  lx_ulong h = 0;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = handle_out(t_(session, l, n, obj ? &h : NULL), obj, &h);
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_CopyObject(w_ulong session, w_ulong src, w_attr *tmpl, w_ulong n, w_ulong *obj) {
  TARGET(CopyObject, lx_ulong(*)(lx_ulong, lx_ulong, lx_attr *, lx_ulong, lx_ulong *));
  struct arena a = { 0 };
  lx_attr *l;
  lx_ulong h = 0;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = handle_out(t_(session, src, l, n, obj ? &h : NULL), obj, &h);
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_GetObjectSize(w_ulong session, w_ulong obj, w_ulong *size) {
  TARGET(GetObjectSize, lx_ulong(*)(lx_ulong, lx_ulong, lx_ulong *));
  lx_ulong s = 0;
  lx_ulong rv = t_(session, obj, size ? &s : NULL);
  if (rv == CKR_OK) len_out(size, s);
  return rv32(rv);
}

w_rv WINAPI b_GetAttributeValue(w_ulong session, w_ulong obj, w_attr *tmpl, w_ulong n) {
  TARGET(GetAttributeValue, lx_ulong(*)(lx_ulong, lx_ulong, lx_attr *, lx_ulong));
  struct arena a = { 0 };
  lx_attr *l;
  w_rv rv = tmpl_out_prepare(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) {
    lx_ulong r = t_(session, obj, l, n);
    if (tmpl && (r == CKR_OK || r == CKR_ATTRIBUTE_SENSITIVE || r == CKR_ATTRIBUTE_TYPE_INVALID ||
                 r == CKR_BUFFER_TOO_SMALL))
      tmpl_out_finish(tmpl, l, n);
    rv = rv32(r);
  }
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_SetAttributeValue(w_ulong session, w_ulong obj, w_attr *tmpl, w_ulong n) {
  TARGET(SetAttributeValue, lx_ulong(*)(lx_ulong, lx_ulong, lx_attr *, lx_ulong));
  struct arena a = { 0 };
  lx_attr *l;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = rv32(t_(session, obj, l, n));
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_FindObjectsInit(w_ulong session, w_attr *tmpl, w_ulong n) {
  TARGET(FindObjectsInit, lx_ulong(*)(lx_ulong, lx_attr *, lx_ulong));
  struct arena a = { 0 };
  lx_attr *l;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = rv32(t_(session, l, n));
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_FindObjects(w_ulong session, w_ulong *objs, w_ulong max, w_ulong *count) {
  TARGET(FindObjects, lx_ulong(*)(lx_ulong, lx_ulong *, lx_ulong, lx_ulong *));
  lx_ulong n = 0, *tmp = NULL;
  if (objs && !(tmp = calloc(max ? max : 1, sizeof *tmp))) return CKR_HOST_MEMORY;
  lx_ulong rv = t_(session, tmp, max, count ? &n : NULL);
  if (rv == CKR_OK && objs && count) rv = ids_out(objs, tmp, n < max ? n : max);
  if (rv == CKR_OK && count) *count = narrow(n);
  free(tmp);
  return rv32(rv);
}

/* ---- keys ---- */

w_rv WINAPI b_GenerateKey(w_ulong session, w_mech *mech, w_attr *tmpl, w_ulong n, w_ulong *key) {
  TARGET(GenerateKey, lx_ulong(*)(lx_ulong, lx_mech *, lx_attr *, lx_ulong, lx_ulong *));
  MECH(mech);
  struct arena a = { 0 };
  lx_attr *l;
  lx_ulong h = 0;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = handle_out(t_(session, m_, l, n, key ? &h : NULL), key, &h);
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_GenerateKeyPair(w_ulong session, w_mech *mech, w_attr *pubT, w_ulong pubN,
                              w_attr *privT, w_ulong privN, w_ulong *pub, w_ulong *priv) {
  TARGET(GenerateKeyPair, lx_ulong(*)(lx_ulong, lx_mech *, lx_attr *, lx_ulong, lx_attr *,
                                      lx_ulong, lx_ulong *, lx_ulong *));
  MECH(mech);
  struct arena a = { 0 };
  lx_attr *lpub, *lpriv;
  lx_ulong hpub = 0, hpriv = 0;
  w_rv rv = tmpl_in(&a, pubT, pubN, &lpub, 0);
  if (rv == CKR_OK) rv = tmpl_in(&a, privT, privN, &lpriv, 0);
  if (rv == CKR_OK) {
    lx_ulong r = t_(session, m_, lpub, pubN, lpriv, privN, pub ? &hpub : NULL, priv ? &hpriv : NULL);
    rv = handle_out(r, pub, &hpub);
    if (rv == CKR_OK) rv = handle_out(r, priv, &hpriv);
  }
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_WrapKey(w_ulong session, w_mech *mech, w_ulong wrapping, w_ulong key, uint8_t *out,
                      w_ulong *outLen) {
  TARGET(WrapKey, lx_ulong(*)(lx_ulong, lx_mech *, lx_ulong, lx_ulong, uint8_t *, lx_ulong *));
  MECH(mech);
  lx_ulong n = len_in(outLen);
  lx_ulong rv = t_(session, m_, wrapping, key, out, outLen ? &n : NULL);
  len_out(outLen, n);
  return rv32(rv);
}

w_rv WINAPI b_UnwrapKey(w_ulong session, w_mech *mech, w_ulong unwrapping, uint8_t *wrapped,
                        w_ulong wrappedLen, w_attr *tmpl, w_ulong n, w_ulong *key) {
  TARGET(UnwrapKey, lx_ulong(*)(lx_ulong, lx_mech *, lx_ulong, uint8_t *, lx_ulong, lx_attr *,
                                lx_ulong, lx_ulong *));
  MECH(mech);
  struct arena a = { 0 };
  lx_attr *l;
  lx_ulong h = 0;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK)
    rv = handle_out(t_(session, m_, unwrapping, wrapped, wrappedLen, l, n, key ? &h : NULL), key, &h);
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_DeriveKey(w_ulong session, w_mech *mech, w_ulong base, w_attr *tmpl, w_ulong n, w_ulong *key) {
  TARGET(DeriveKey, lx_ulong(*)(lx_ulong, lx_mech *, lx_ulong, lx_attr *, lx_ulong, lx_ulong *));
  MECH(mech);
  struct arena a = { 0 };
  lx_attr *l;
  lx_ulong h = 0;
  w_rv rv = tmpl_in(&a, tmpl, n, &l, 0);
  if (rv == CKR_OK) rv = handle_out(t_(session, m_, base, l, n, key ? &h : NULL), key, &h);
  arena_free(&a);
  return rv;
}

w_rv WINAPI b_DigestInit(w_ulong session, w_mech *mech) {
  TARGET(DigestInit, lx_ulong(*)(lx_ulong, lx_mech *));
  MECH(mech);
  return rv32(t_(session, m_));
}

/* ---- the many functions that share a shape ---- */

#define SHAPE_H(name) /* (handle) */                                                        \
  w_rv WINAPI b_##name(w_ulong h) {                                                         \
    TARGET(name, lx_ulong(*)(lx_ulong));                                                    \
    return rv32(t_(h));                                                                     \
  }
#define SHAPE_HH(name) /* (session, object) */                                              \
  w_rv WINAPI b_##name(w_ulong s, w_ulong h) {                                              \
    TARGET(name, lx_ulong(*)(lx_ulong, lx_ulong));                                          \
    return rv32(t_(s, h));                                                                  \
  }
#define SHAPE_INIT(name) /* (session, mechanism, key) */                                    \
  w_rv WINAPI b_##name(w_ulong s, w_mech *mech, w_ulong key) {                              \
    TARGET(name, lx_ulong(*)(lx_ulong, lx_mech *, lx_ulong));                               \
    MECH(mech);                                                                             \
    return rv32(t_(s, m_, key));                                                            \
  }
#define SHAPE_IN(name) /* (session, data, length) */                                        \
  w_rv WINAPI b_##name(w_ulong s, uint8_t *in, w_ulong inLen) {                             \
    TARGET(name, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong));                               \
    return rv32(t_(s, in, inLen));                                                          \
  }
#define SHAPE_IN2(name) /* (session, data, length, data, length) */                         \
  w_rv WINAPI b_##name(w_ulong s, uint8_t *a, w_ulong aLen, uint8_t *b, w_ulong bLen) {     \
    TARGET(name, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong, uint8_t *, lx_ulong));          \
    return rv32(t_(s, a, aLen, b, bLen));                                                   \
  }
#define SHAPE_OUT(name) /* (session, buffer, in/out length) */                              \
  w_rv WINAPI b_##name(w_ulong s, uint8_t *out, w_ulong *outLen) {                          \
    TARGET(name, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong *));                             \
    lx_ulong n = len_in(outLen);                                                            \
    lx_ulong rv = t_(s, out, outLen ? &n : NULL);                                           \
    len_out(outLen, n);                                                                     \
    return rv32(rv);                                                                        \
  }
#define SHAPE_INOUT(name) /* (session, data, length, buffer, in/out length) */              \
  w_rv WINAPI b_##name(w_ulong s, uint8_t *in, w_ulong inLen, uint8_t *out, w_ulong *outLen) { \
    TARGET(name, lx_ulong(*)(lx_ulong, uint8_t *, lx_ulong, uint8_t *, lx_ulong *));        \
    lx_ulong n = len_in(outLen);                                                            \
    lx_ulong rv = t_(s, in, inLen, out, outLen ? &n : NULL);                                \
    len_out(outLen, n);                                                                     \
    return rv32(rv);                                                                        \
  }

SHAPE_H(CloseSession) SHAPE_H(CloseAllSessions) SHAPE_H(Logout) SHAPE_H(FindObjectsFinal)
SHAPE_H(GetFunctionStatus) SHAPE_H(CancelFunction)
SHAPE_HH(DestroyObject) SHAPE_HH(DigestKey)
SHAPE_INIT(EncryptInit) SHAPE_INIT(DecryptInit) SHAPE_INIT(SignInit) SHAPE_INIT(VerifyInit)
SHAPE_INIT(SignRecoverInit) SHAPE_INIT(VerifyRecoverInit)
SHAPE_IN(InitPIN) SHAPE_IN(DigestUpdate) SHAPE_IN(SignUpdate) SHAPE_IN(VerifyUpdate)
SHAPE_IN(VerifyFinal) SHAPE_IN(SeedRandom) SHAPE_IN(GenerateRandom)
SHAPE_IN2(SetPIN) SHAPE_IN2(Verify)
SHAPE_OUT(GetOperationState) SHAPE_OUT(EncryptFinal) SHAPE_OUT(DecryptFinal)
SHAPE_OUT(DigestFinal) SHAPE_OUT(SignFinal)
SHAPE_INOUT(Encrypt) SHAPE_INOUT(EncryptUpdate) SHAPE_INOUT(Decrypt) SHAPE_INOUT(DecryptUpdate)
SHAPE_INOUT(Digest) SHAPE_INOUT(Sign) SHAPE_INOUT(SignRecover) SHAPE_INOUT(VerifyRecover)
SHAPE_INOUT(DigestEncryptUpdate) SHAPE_INOUT(DecryptDigestUpdate) SHAPE_INOUT(SignEncryptUpdate)
SHAPE_INOUT(DecryptVerifyUpdate)

static void fill_w_list(void) {
#define X(n) w_list.fn[F_##n] = (void *)b_##n;
  FUNCTIONS(X)
#undef X
}
