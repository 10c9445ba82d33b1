/* Lets a mingw-built Node-API addon load inside an executable of any name. The addon imports
   napi_* from "NODE.EXE" through a delay-load import library; when the loader resolves that
   name we hand it the running executable itself (our renamed node.exe), which exports them. */
#include <windows.h>
#include <delayimp.h>

static FARPROC WINAPI on_delay_load(unsigned int event, PDelayLoadInfo info) {
  if (event == dliNotePreLoadLibrary && _stricmp(info->szDll, "NODE.EXE") == 0) return (FARPROC)GetModuleHandleW(NULL);
  return NULL;
}

/* Defining both hooks here keeps mingw's own (empty) definitions out of the link. */
PfnDliHook __pfnDliNotifyHook2 = on_delay_load;
PfnDliHook __pfnDliFailureHook2 = NULL;
