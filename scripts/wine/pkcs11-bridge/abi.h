/* The PKCS#11 types as a Windows caller and as the Linux module see them, side by side, for bridge.c. */
#ifndef PKCS11_BRIDGE_ABI_H
#define PKCS11_BRIDGE_ABI_H
#include <stddef.h>
#include <stdint.h>

#define WINAPI __attribute__((ms_abi))

typedef uint32_t w_ulong;       /* CK_ULONG as a Windows caller sees it */
typedef unsigned long lx_ulong; /* CK_ULONG as the Linux module sees it */
typedef w_ulong w_rv;

#define W_UNAVAILABLE 0xFFFFFFFFu
#define LX_UNAVAILABLE (~0UL)

#define CKR_OK 0x0
#define CKR_HOST_MEMORY 0x2
#define CKR_GENERAL_ERROR 0x5
#define CKR_ARGUMENTS_BAD 0x7
#define CKR_ATTRIBUTE_SENSITIVE 0x11
#define CKR_ATTRIBUTE_TYPE_INVALID 0x12
#define CKR_FUNCTION_NOT_SUPPORTED 0x54
#define CKR_MECHANISM_PARAM_INVALID 0x71
#define CKR_TEMPLATE_INCONSISTENT 0xD1
#define CKR_BUFFER_TOO_SMALL 0x150
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190

/* The v2.x function list, in its fixed order. */
#define FUNCTIONS(X)                                                                            \
  X(Initialize) X(Finalize) X(GetInfo) X(GetFunctionList) X(GetSlotList) X(GetSlotInfo)         \
  X(GetTokenInfo) X(GetMechanismList) X(GetMechanismInfo) X(InitToken) X(InitPIN) X(SetPIN)     \
  X(OpenSession) X(CloseSession) X(CloseAllSessions) X(GetSessionInfo) X(GetOperationState)     \
  X(SetOperationState) X(Login) X(Logout) X(CreateObject) X(CopyObject) X(DestroyObject)        \
  X(GetObjectSize) X(GetAttributeValue) X(SetAttributeValue) X(FindObjectsInit) X(FindObjects)  \
  X(FindObjectsFinal) X(EncryptInit) X(Encrypt) X(EncryptUpdate) X(EncryptFinal) X(DecryptInit) \
  X(Decrypt) X(DecryptUpdate) X(DecryptFinal) X(DigestInit) X(Digest) X(DigestUpdate)           \
  X(DigestKey) X(DigestFinal) X(SignInit) X(Sign) X(SignUpdate) X(SignFinal)                    \
  X(SignRecoverInit) X(SignRecover) X(VerifyInit) X(Verify) X(VerifyUpdate) X(VerifyFinal)      \
  X(VerifyRecoverInit) X(VerifyRecover) X(DigestEncryptUpdate) X(DecryptDigestUpdate)           \
  X(SignEncryptUpdate) X(DecryptVerifyUpdate) X(GenerateKey) X(GenerateKeyPair) X(WrapKey)      \
  X(UnwrapKey) X(DeriveKey) X(SeedRandom) X(GenerateRandom) X(GetFunctionStatus)                \
  X(CancelFunction) X(WaitForSlotEvent)

enum {
#define X(n) F_##n,
  FUNCTIONS(X)
#undef X
  F_COUNT
};
_Static_assert(F_COUNT == 68, "PKCS#11 v2 function list has 68 entries");

typedef struct { uint8_t major, minor; } ck_version;

/* Windows side: packed, 32-bit CK_ULONG. */
#pragma pack(push, 1)
typedef struct { w_ulong type; void *pValue; w_ulong ulValueLen; } w_attr;
typedef struct { w_ulong mechanism; void *pParameter; w_ulong ulParameterLen; } w_mech;
typedef struct {
  ck_version cryptokiVersion; uint8_t manufacturerID[32]; w_ulong flags;
  uint8_t libraryDescription[32]; ck_version libraryVersion;
} w_info;
typedef struct {
  uint8_t slotDescription[64]; uint8_t manufacturerID[32]; w_ulong flags;
  ck_version hardwareVersion, firmwareVersion;
} w_slot_info;
typedef struct {
  uint8_t label[32], manufacturerID[32], model[16], serialNumber[16];
  w_ulong flags, ulMaxSessionCount, ulSessionCount, ulMaxRwSessionCount, ulRwSessionCount,
      ulMaxPinLen, ulMinPinLen, ulTotalPublicMemory, ulFreePublicMemory, ulTotalPrivateMemory,
      ulFreePrivateMemory;
  ck_version hardwareVersion, firmwareVersion; uint8_t utcTime[16];
} w_token_info;
typedef struct { w_ulong slotID, state, flags, ulDeviceError; } w_session_info;
typedef struct { w_ulong ulMinKeySize, ulMaxKeySize, flags; } w_mech_info;
typedef struct {
  void *CreateMutex, *DestroyMutex, *LockMutex, *UnlockMutex; w_ulong flags; void *pReserved;
} w_init_args;
typedef struct { w_ulong hashAlg, mgf, sLen; } w_pss;
typedef struct { w_ulong hashAlg, mgf, source; void *pSourceData; w_ulong ulSourceDataLen; } w_oaep;
typedef struct { void *pIv; w_ulong ulIvLen, ulIvBits; void *pAAD; w_ulong ulAADLen, ulTagBits; } w_gcm;
/* The GCM struct of the first v2.40 header, without ulIvBits; some callers still send it. */
typedef struct { void *pIv; w_ulong ulIvLen; void *pAAD; w_ulong ulAADLen, ulTagBits; } w_gcm_short;
typedef struct { w_ulong ulCounterBits; uint8_t cb[16]; } w_ctr;
typedef struct {
  w_ulong kdf, ulSharedDataLen; void *pSharedData; w_ulong ulPublicDataLen; void *pPublicData;
} w_ecdh1;
typedef struct { ck_version version; void *fn[F_COUNT]; } w_function_list;
#pragma pack(pop)

/* Linux side: natural alignment, 64-bit CK_ULONG. */
typedef struct { lx_ulong type; void *pValue; lx_ulong ulValueLen; } lx_attr;
typedef struct { lx_ulong mechanism; void *pParameter; lx_ulong ulParameterLen; } lx_mech;
typedef struct {
  ck_version cryptokiVersion; uint8_t manufacturerID[32]; lx_ulong flags;
  uint8_t libraryDescription[32]; ck_version libraryVersion;
} lx_info;
typedef struct {
  uint8_t slotDescription[64]; uint8_t manufacturerID[32]; lx_ulong flags;
  ck_version hardwareVersion, firmwareVersion;
} lx_slot_info;
typedef struct {
  uint8_t label[32], manufacturerID[32], model[16], serialNumber[16];
  lx_ulong flags, ulMaxSessionCount, ulSessionCount, ulMaxRwSessionCount, ulRwSessionCount,
      ulMaxPinLen, ulMinPinLen, ulTotalPublicMemory, ulFreePublicMemory, ulTotalPrivateMemory,
      ulFreePrivateMemory;
  ck_version hardwareVersion, firmwareVersion; uint8_t utcTime[16];
} lx_token_info;
typedef struct { lx_ulong slotID, state, flags, ulDeviceError; } lx_session_info;
typedef struct { lx_ulong ulMinKeySize, ulMaxKeySize, flags; } lx_mech_info;
typedef struct {
  void *CreateMutex, *DestroyMutex, *LockMutex, *UnlockMutex; lx_ulong flags; void *pReserved;
} lx_init_args;
typedef struct { lx_ulong hashAlg, mgf, sLen; } lx_pss;
typedef struct { lx_ulong hashAlg, mgf, source; void *pSourceData; lx_ulong ulSourceDataLen; } lx_oaep;
typedef struct { void *pIv; lx_ulong ulIvLen, ulIvBits; void *pAAD; lx_ulong ulAADLen, ulTagBits; } lx_gcm;
typedef struct { lx_ulong ulCounterBits; uint8_t cb[16]; } lx_ctr;
typedef struct {
  lx_ulong kdf, ulSharedDataLen; void *pSharedData; lx_ulong ulPublicDataLen; void *pPublicData;
} lx_ecdh1;
typedef struct { ck_version version; void *fn[F_COUNT]; } lx_function_list;

_Static_assert(sizeof(w_attr) == 16 && sizeof(w_mech) == 16 && sizeof(w_init_args) == 44,
               "Windows cryptoki structs must be packed");
_Static_assert(offsetof(w_function_list, fn) == 2, "Windows function list is packed");

#endif
