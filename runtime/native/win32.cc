// Win32 pieces Node lacks, for hsm-driver on Windows: the service protocol, service registration, file security descriptors, the event log.
#include <windows.h>
#include <aclapi.h>
#include <sddl.h>

#include <node_api.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers: strings, errors, arguments

std::wstring to_wide(const std::u16string& s) { return std::wstring(s.begin(), s.end()); }

// Throws a JS TypeError for bad arguments; Win32 failures use throw_win32 instead.
void throw_type(napi_env env, const char* message) { napi_throw_type_error(env, nullptr, message); }

std::string narrow(const wchar_t* w, int len = -1) {
  int n = WideCharToMultiByte(CP_UTF8, 0, w, len, nullptr, 0, nullptr, nullptr);
  if (n <= 0) return {};
  std::string out(n, '\0');
  WideCharToMultiByte(CP_UTF8, 0, w, len, &out[0], n, nullptr, nullptr);
  if (len < 0) out.resize(n - 1);  // drop the terminator WideCharToMultiByte counted
  return out;
}

// The system's text for a Win32 error, on one line ("" when it has none).
std::string error_text(DWORD code) {
  wchar_t* buf = nullptr;
  DWORD n = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                           nullptr, code, 0, reinterpret_cast<wchar_t*>(&buf), 0, nullptr);
  std::string text = n ? narrow(buf, static_cast<int>(n)) : std::string();
  if (buf) LocalFree(buf);
  for (char& c : text) if (c == '\r' || c == '\n') c = ' ';
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// Throws `Error("<what>: <code> <text>")` with a numeric `code`, so TypeScript can branch on
// ERROR_SERVICE_DOES_NOT_EXIST and friends without parsing messages.
void throw_win32(napi_env env, const std::string& what, DWORD code) {
  std::string message = what + ": " + std::to_string(code);
  std::string text = error_text(code);
  if (!text.empty()) message += " " + text;
  napi_value msg, err, num;
  napi_create_string_utf8(env, message.c_str(), message.size(), &msg);
  napi_create_error(env, nullptr, msg, &err);
  napi_create_uint32(env, code, &num);
  napi_set_named_property(env, err, "code", num);
  napi_throw(env, err);
}

napi_value undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

napi_value make_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

napi_value make_string(napi_env env, const wchar_t* s) {
  napi_value v;
  if (!s) { napi_get_null(env, &v); return v; }
  napi_create_string_utf16(env, reinterpret_cast<const char16_t*>(s), NAPI_AUTO_LENGTH, &v);
  return v;
}

napi_value make_string(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}

void set(napi_env env, napi_value obj, const char* key, napi_value v) { napi_set_named_property(env, obj, key, v); }
void set_u32(napi_env env, napi_value obj, const char* key, uint32_t n) {
  napi_value v;
  napi_create_uint32(env, n, &v);
  set(env, obj, key, v);
}

bool get_string(napi_env env, napi_value v, std::wstring* out) {
  size_t len = 0;
  if (napi_get_value_string_utf16(env, v, nullptr, 0, &len) != napi_ok) return false;
  std::u16string s(len, u'\0');
  napi_get_value_string_utf16(env, v, &s[0], len + 1, &len);
  *out = to_wide(s);
  return true;
}

// Reads `count` arguments; false (with a TypeError thrown) when fewer were passed.
bool get_args(napi_env env, napi_callback_info info, size_t count, napi_value* argv) {
  size_t argc = count;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < count) { throw_type(env, "too few arguments"); return false; }
  return true;
}

// Reads string arguments 0..n-1; throws a TypeError naming the first one that is not a string.
bool get_strings(napi_env env, napi_callback_info info, std::initializer_list<std::wstring*> outs) {
  napi_value argv[4];
  if (!get_args(env, info, outs.size(), argv)) return false;
  size_t i = 0;
  for (std::wstring* out : outs) {
    if (!get_string(env, argv[i], out)) {
      std::string m = "argument " + std::to_string(i + 1) + " must be a string";
      throw_type(env, m.c_str());
      return false;
    }
    ++i;
  }
  return true;
}

// Optional string property: absent/undefined/null → false with *present = false.
bool get_prop_string(napi_env env, napi_value obj, const char* key, bool required, std::wstring* out, bool* present) {
  napi_value v;
  napi_valuetype t;
  *present = false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return false;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) {
    if (!required) return true;
  } else if (t == napi_string) {
    *present = true;
    return get_string(env, v, out);
  }
  std::string m = std::string("option '") + key + "' must be a string";
  throw_type(env, m.c_str());
  return false;
}

std::string u8(const std::wstring& w) { return narrow(w.c_str()); }

// Owns a handle that must go through a specific close function.
struct ScHandle {
  SC_HANDLE h = nullptr;
  ~ScHandle() { if (h) CloseServiceHandle(h); }
};
struct LocalMem {
  void* p = nullptr;
  ~LocalMem() { if (p) LocalFree(p); }
};

// ---------------------------------------------------------------------------------------------
// Service protocol. Three native threads are involved: our dispatcher thread (it blocks in
// StartServiceCtrlDispatcherW and runs the control handler), the ServiceMain thread the
// dispatcher creates, and Node's main thread (setServiceStatus). JS hears about everything
// through one threadsafe function; the shared status is guarded by a lock.

struct ServiceState {
  SRWLOCK lock = SRWLOCK_INIT;
  wchar_t name[257] = {};                 // the service table needs it for the process lifetime
  SERVICE_STATUS_HANDLE handle = nullptr;  // set by ServiceMain
  SERVICE_STATUS status = {};
  bool stopped = false;                   // STOPPED reported: the handle is no longer valid
  bool started = false;                   // startServiceDispatcher was called
  napi_threadsafe_function tsfn = nullptr;
  bool tsfn_closing = false;              // Node refused a call: the tsfn may be gone, don't touch it
  bool tsfn_finalized = false;            // main thread only
};
ServiceState g_svc;

constexpr DWORD kStartWaitHintMs = 30000;
// Reported by the control handler itself on STOP, so the SCM (and ControlService's caller)
// sees STOP_PENDING at once, however busy the JS thread is; JS then reports its own hints.
constexpr DWORD kStopWaitHintMs = 30000;

// Hands an event string to JS. Any thread; never blocks.
void post(const char* event) {
  AcquireSRWLockExclusive(&g_svc.lock);
  napi_threadsafe_function tsfn = g_svc.tsfn_closing ? nullptr : g_svc.tsfn;
  ReleaseSRWLockExclusive(&g_svc.lock);
  if (!tsfn) return;
  char* copy = _strdup(event);
  napi_status st = napi_call_threadsafe_function(tsfn, copy, napi_tsfn_nonblocking);
  if (st != napi_ok) {
    free(copy);
    if (st == napi_closing) {
      AcquireSRWLockExclusive(&g_svc.lock);
      g_svc.tsfn_closing = true;
      ReleaseSRWLockExclusive(&g_svc.lock);
    }
  }
}

// The dispatcher thread's reference to the tsfn; its release lets Node finalize it.
void release_tsfn() {
  AcquireSRWLockExclusive(&g_svc.lock);
  napi_threadsafe_function tsfn = g_svc.tsfn_closing ? nullptr : g_svc.tsfn;
  g_svc.tsfn_closing = true;
  ReleaseSRWLockExclusive(&g_svc.lock);
  if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

// Runs on Node's main thread for each posted event.
void call_js(napi_env env, napi_value cb, void*, void* data) {
  char* event = static_cast<char*>(data);
  if (env && cb) {
    napi_value arg, recv;
    napi_create_string_utf8(env, event, NAPI_AUTO_LENGTH, &arg);
    napi_get_undefined(env, &recv);
    if (napi_call_function(env, recv, cb, 1, &arg, nullptr) == napi_pending_exception) {
      // An exception from the callback must surface like any other uncaught one.
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  free(event);
}

void finalize_tsfn(napi_env, void*, void*) {
  AcquireSRWLockExclusive(&g_svc.lock);
  g_svc.tsfn = nullptr;
  g_svc.tsfn_closing = true;
  g_svc.tsfn_finalized = true;
  ReleaseSRWLockExclusive(&g_svc.lock);
}

// Sends the current status to the SCM; caller holds the lock.
DWORD report_locked() {
  if (!g_svc.handle || g_svc.stopped) return ERROR_SERVICE_NOT_ACTIVE;
  if (g_svc.status.dwCurrentState == SERVICE_STOPPED) g_svc.stopped = true;
  return SetServiceStatus(g_svc.handle, &g_svc.status) ? NO_ERROR : GetLastError();
}

// Fills the status fields that follow from the state: the checkpoint grows while pending and is
// 0 otherwise, and controls are accepted only while RUNNING (a pending service cannot take a
// second STOP, and STOPPED takes none).
void set_state_locked(DWORD state, DWORD wait_hint) {
  bool pending = state == SERVICE_START_PENDING || state == SERVICE_STOP_PENDING ||
                 state == SERVICE_CONTINUE_PENDING || state == SERVICE_PAUSE_PENDING;
  g_svc.status.dwCheckPoint = pending ? g_svc.status.dwCheckPoint + 1 : 0;
  g_svc.status.dwCurrentState = state;
  g_svc.status.dwWaitHint = pending ? wait_hint : 0;
  g_svc.status.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN : 0;
}

DWORD WINAPI control_handler(DWORD control, DWORD, void*, void*) {
  switch (control) {
    case SERVICE_CONTROL_STOP:
    case SERVICE_CONTROL_SHUTDOWN: {
      AcquireSRWLockExclusive(&g_svc.lock);
      bool running = g_svc.status.dwCurrentState == SERVICE_RUNNING;
      if (running) {
        set_state_locked(SERVICE_STOP_PENDING, kStopWaitHintMs);
        report_locked();
      }
      ReleaseSRWLockExclusive(&g_svc.lock);
      post(control == SERVICE_CONTROL_STOP ? "stop" : "shutdown");
      return NO_ERROR;
    }
    case SERVICE_CONTROL_INTERROGATE:
      AcquireSRWLockExclusive(&g_svc.lock);
      report_locked();
      ReleaseSRWLockExclusive(&g_svc.lock);
      return NO_ERROR;
    default:
      return ERROR_CALL_NOT_IMPLEMENTED;
  }
}

void WINAPI service_main(DWORD, LPWSTR*) {
  SERVICE_STATUS_HANDLE h = RegisterServiceCtrlHandlerExW(g_svc.name, control_handler, nullptr);
  if (!h) {
    std::string e = "error:" + std::to_string(GetLastError());
    post(e.c_str());
    return;
  }
  AcquireSRWLockExclusive(&g_svc.lock);
  g_svc.handle = h;
  g_svc.status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
  set_state_locked(SERVICE_START_PENDING, kStartWaitHintMs);
  report_locked();
  ReleaseSRWLockExclusive(&g_svc.lock);
  // Returning is fine: the process stays a service until it reports STOPPED, and the
  // dispatcher keeps running the control handler on its own thread.
  post("started");
}

DWORD WINAPI dispatcher_thread(void*) {
  SERVICE_TABLE_ENTRYW table[] = {{g_svc.name, service_main}, {nullptr, nullptr}};
  if (StartServiceCtrlDispatcherW(table)) {
    post("exited");
  } else {
    std::string e = "error:" + std::to_string(GetLastError());
    post(e.c_str());
  }
  release_tsfn();
  return 0;
}

napi_value start_service_dispatcher(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return nullptr;
  std::wstring name;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (!get_string(env, argv[0], &name) || name.empty() || name.size() > 256 || t != napi_function) {
    throw_type(env, "startServiceDispatcher(name: string (1-256 chars), onControl: function)");
    return nullptr;
  }
  if (g_svc.started) {
    throw_type(env, "startServiceDispatcher: already called in this process");
    return nullptr;
  }
  wcsncpy(g_svc.name, name.c_str(), 256);
  napi_value resource_name;
  napi_create_string_utf8(env, "hsm-driver:service-dispatcher", NAPI_AUTO_LENGTH, &resource_name);
  // One thread reference, held by the dispatcher thread until StartServiceCtrlDispatcherW
  // returns. The tsfn stays ref'd (keeps the process alive while the SCM talks to it) until
  // setServiceStatus(STOPPED) unrefs it.
  napi_threadsafe_function tsfn;
  if (napi_create_threadsafe_function(env, argv[1], nullptr, resource_name, 0, 1, nullptr, finalize_tsfn, nullptr,
                                      call_js, &tsfn) != napi_ok) {
    throw_type(env, "startServiceDispatcher: napi_create_threadsafe_function failed");
    return nullptr;
  }
  g_svc.tsfn = tsfn;
  g_svc.started = true;
  HANDLE th = CreateThread(nullptr, 0, dispatcher_thread, nullptr, 0, nullptr);
  if (!th) {
    DWORD code = GetLastError();
    release_tsfn();
    throw_win32(env, "CreateThread", code);
    return nullptr;
  }
  CloseHandle(th);
  return undefined(env);
}

napi_value set_service_status(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return nullptr;
  uint32_t state, wait_hint, win32_exit, service_exit;
  if (napi_get_value_uint32(env, argv[0], &state) != napi_ok || napi_get_value_uint32(env, argv[1], &wait_hint) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &win32_exit) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &service_exit) != napi_ok || state < SERVICE_STOPPED || state > SERVICE_PAUSED) {
    throw_type(env, "setServiceStatus(state: 1-7, waitHintMs, win32ExitCode, serviceExitCode: numbers)");
    return nullptr;
  }
  AcquireSRWLockExclusive(&g_svc.lock);
  DWORD err;
  if (!g_svc.handle || g_svc.stopped) {
    err = ERROR_SERVICE_NOT_ACTIVE;  // not started by the SCM yet, or STOPPED already reported
  } else {
    set_state_locked(state, wait_hint);
    // A service-specific code travels in its own field, flagged by ERROR_SERVICE_SPECIFIC_ERROR.
    g_svc.status.dwWin32ExitCode = service_exit ? ERROR_SERVICE_SPECIFIC_ERROR : win32_exit;
    g_svc.status.dwServiceSpecificExitCode = service_exit;
    err = report_locked();
  }
  bool unref = state == SERVICE_STOPPED && g_svc.stopped && !g_svc.tsfn_finalized && g_svc.tsfn;
  napi_threadsafe_function tsfn = g_svc.tsfn;
  ReleaseSRWLockExclusive(&g_svc.lock);
  // Stopped: the pending "exited" must not keep Node alive by itself. The tsfn can only be
  // finalized on this (main) thread, so it is still valid here.
  if (unref) napi_unref_threadsafe_function(env, tsfn);
  if (err != NO_ERROR) {
    throw_win32(env, "SetServiceStatus", err);
    return nullptr;
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Service registration

const char* state_name(DWORD s) {
  switch (s) {
    case SERVICE_STOPPED: return "STOPPED";
    case SERVICE_START_PENDING: return "START_PENDING";
    case SERVICE_STOP_PENDING: return "STOP_PENDING";
    case SERVICE_RUNNING: return "RUNNING";
    case SERVICE_CONTINUE_PENDING: return "CONTINUE_PENDING";
    case SERVICE_PAUSE_PENDING: return "PAUSE_PENDING";
    case SERVICE_PAUSED: return "PAUSED";
    default: return "UNKNOWN";
  }
}

napi_value status_object(napi_env env, const SERVICE_STATUS& s, DWORD pid) {
  napi_value o;
  napi_create_object(env, &o);
  set_u32(env, o, "state", s.dwCurrentState);
  set(env, o, "stateName", make_string(env, state_name(s.dwCurrentState)));
  set_u32(env, o, "win32ExitCode", s.dwWin32ExitCode);
  set_u32(env, o, "serviceExitCode", s.dwServiceSpecificExitCode);
  set_u32(env, o, "pid", pid);
  set_u32(env, o, "waitHint", s.dwWaitHint);
  set_u32(env, o, "checkPoint", s.dwCheckPoint);
  set_u32(env, o, "controlsAccepted", s.dwControlsAccepted);
  return o;
}

bool open_scm(napi_env env, DWORD access, ScHandle* scm) {
  scm->h = OpenSCManagerW(nullptr, nullptr, access);
  if (!scm->h) throw_win32(env, "OpenSCManagerW", GetLastError());
  return scm->h != nullptr;
}

// Opens service `name`; on failure throws and returns false.
bool open_service(napi_env env, const std::wstring& name, DWORD access, ScHandle* scm, ScHandle* svc) {
  if (!open_scm(env, SC_MANAGER_CONNECT, scm)) return false;
  svc->h = OpenServiceW(scm->h, name.c_str(), access);
  if (!svc->h) throw_win32(env, "OpenServiceW(" + u8(name) + ")", GetLastError());
  return svc->h != nullptr;
}

napi_value install_service(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return nullptr;
  std::wstring name, display, description, command, account, password;
  bool has_name, has_display, has_desc, has_command, has_account, has_password, auto_start = false;
  if (!get_prop_string(env, argv[0], "name", true, &name, &has_name) ||
      !get_prop_string(env, argv[0], "displayName", false, &display, &has_display) ||
      !get_prop_string(env, argv[0], "description", false, &description, &has_desc) ||
      !get_prop_string(env, argv[0], "commandLine", true, &command, &has_command) ||
      !get_prop_string(env, argv[0], "account", false, &account, &has_account) ||
      !get_prop_string(env, argv[0], "password", false, &password, &has_password))
    return nullptr;
  napi_value v;
  if (napi_get_named_property(env, argv[0], "autoStart", &v) == napi_ok) napi_get_value_bool(env, v, &auto_start);

  ScHandle scm, svc;
  if (!open_scm(env, SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE, &scm)) return nullptr;
  // No account means LocalSystem; a password only makes sense for a named account.
  svc.h = CreateServiceW(scm.h, name.c_str(), has_display ? display.c_str() : name.c_str(), SERVICE_ALL_ACCESS,
                         SERVICE_WIN32_OWN_PROCESS, auto_start ? SERVICE_AUTO_START : SERVICE_DEMAND_START,
                         SERVICE_ERROR_NORMAL, command.c_str(), nullptr, nullptr, nullptr,
                         has_account ? account.c_str() : nullptr, has_password ? password.c_str() : nullptr);
  SecureZeroMemory(&password[0], password.size() * sizeof(wchar_t));
  if (!svc.h) {
    throw_win32(env, "CreateServiceW(" + u8(name) + ")", GetLastError());
    return nullptr;
  }

  // The optional parts: the service exists now, so a refusal (a Wine stub, an old Windows)
  // becomes a warning for the caller instead of a half-failed install.
  std::vector<std::string> warnings;
  auto config2 = [&](DWORD level, void* data, const char* what) {
    if (!ChangeServiceConfig2W(svc.h, level, data))
      warnings.push_back("ChangeServiceConfig2W(" + u8(name) + ", " + what + "): " + std::to_string(GetLastError()) + " " +
                         error_text(GetLastError()));
  };
  if (has_desc) {
    SERVICE_DESCRIPTIONW d = {&description[0]};
    config2(SERVICE_CONFIG_DESCRIPTION, &d, "SERVICE_CONFIG_DESCRIPTION");
  }
  // Restart 5 s after each of the first three failures; the count resets after a day.
  SC_ACTION actions[3] = {{SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 5000}};
  SERVICE_FAILURE_ACTIONSW fa = {};
  fa.dwResetPeriod = 24 * 60 * 60;
  fa.cActions = 3;
  fa.lpsaActions = actions;
  config2(SERVICE_CONFIG_FAILURE_ACTIONS, &fa, "SERVICE_CONFIG_FAILURE_ACTIONS");
  // Without this flag only a crash counts; with it, STOPPED with a non-zero exit code does too.
  SERVICE_FAILURE_ACTIONS_FLAG flag = {TRUE};
  config2(SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &flag, "SERVICE_CONFIG_FAILURE_ACTIONS_FLAG");

  napi_value result, list;
  napi_create_object(env, &result);
  napi_create_array_with_length(env, warnings.size(), &list);
  for (size_t i = 0; i < warnings.size(); ++i) napi_set_element(env, list, i, make_string(env, warnings[i]));
  set(env, result, "warnings", list);
  return result;
}

napi_value start_service(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  ScHandle scm, svc;
  if (!open_service(env, name, SERVICE_START, &scm, &svc)) return nullptr;
  if (!StartServiceW(svc.h, 0, nullptr)) {
    throw_win32(env, "StartServiceW(" + u8(name) + ")", GetLastError());
    return nullptr;
  }
  return undefined(env);
}

bool query_status(SC_HANDLE h, SERVICE_STATUS_PROCESS* sp) {
  DWORD needed;
  return QueryServiceStatusEx(h, SC_STATUS_PROCESS_INFO, reinterpret_cast<BYTE*>(sp), sizeof *sp, &needed);
}

SERVICE_STATUS to_status(const SERVICE_STATUS_PROCESS& sp) {
  return {sp.dwServiceType, sp.dwCurrentState, sp.dwControlsAccepted, sp.dwWin32ExitCode,
          sp.dwServiceSpecificExitCode, sp.dwCheckPoint, sp.dwWaitHint};
}

napi_value stop_service(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  ScHandle scm, svc;
  if (!open_service(env, name, SERVICE_STOP | SERVICE_QUERY_STATUS, &scm, &svc)) return nullptr;
  SERVICE_STATUS s = {};
  if (!ControlService(svc.h, SERVICE_CONTROL_STOP, &s)) {
    throw_win32(env, "ControlService(" + u8(name) + ", STOP)", GetLastError());
    return nullptr;
  }
  // ControlService's status has no pid; a fresh query has it (and is at least as recent).
  SERVICE_STATUS_PROCESS sp;
  if (query_status(svc.h, &sp)) return status_object(env, to_status(sp), sp.dwProcessId);
  return status_object(env, s, 0);
}

napi_value query_service(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  ScHandle scm, svc;
  if (!open_service(env, name, SERVICE_QUERY_STATUS, &scm, &svc)) return nullptr;
  SERVICE_STATUS_PROCESS sp;
  if (!query_status(svc.h, &sp)) {
    throw_win32(env, "QueryServiceStatusEx(" + u8(name) + ")", GetLastError());
    return nullptr;
  }
  return status_object(env, to_status(sp), sp.dwProcessId);
}

napi_value delete_service(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  ScHandle scm, svc;
  if (!open_service(env, name, DELETE, &scm, &svc)) return nullptr;
  if (!DeleteService(svc.h)) {
    throw_win32(env, "DeleteService(" + u8(name) + ")", GetLastError());
    return nullptr;
  }
  return undefined(env);
}

// QueryServiceConfig2W into a buffer of the size it asks for; empty when refused.
std::vector<BYTE> query_config2(SC_HANDLE h, DWORD level) {
  DWORD needed = 0;
  QueryServiceConfig2W(h, level, nullptr, 0, &needed);
  if (needed == 0) return {};
  std::vector<BYTE> buf(needed);
  if (!QueryServiceConfig2W(h, level, buf.data(), needed, &needed)) return {};
  return buf;
}

napi_value service_config(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  ScHandle scm, svc;
  if (!open_service(env, name, SERVICE_QUERY_CONFIG, &scm, &svc)) return nullptr;
  DWORD needed = 0;
  QueryServiceConfigW(svc.h, nullptr, 0, &needed);
  std::vector<BYTE> buf(needed ? needed : sizeof(QUERY_SERVICE_CONFIGW));
  auto* cfg = reinterpret_cast<QUERY_SERVICE_CONFIGW*>(buf.data());
  if (!QueryServiceConfigW(svc.h, cfg, static_cast<DWORD>(buf.size()), &needed)) {
    throw_win32(env, "QueryServiceConfigW(" + u8(name) + ")", GetLastError());
    return nullptr;
  }
  napi_value o, nul;
  napi_get_null(env, &nul);
  napi_create_object(env, &o);
  set(env, o, "commandLine", make_string(env, cfg->lpBinaryPathName));
  set(env, o, "account", make_string(env, cfg->lpServiceStartName));
  set_u32(env, o, "startType", cfg->dwStartType);
  set(env, o, "displayName", make_string(env, cfg->lpDisplayName));
  set_u32(env, o, "serviceType", cfg->dwServiceType);

  // The optional parts of the install, null where the SCM does not answer.
  std::vector<BYTE> d = query_config2(svc.h, SERVICE_CONFIG_DESCRIPTION);
  set(env, o, "description", d.empty() ? nul : make_string(env, reinterpret_cast<SERVICE_DESCRIPTIONW*>(d.data())->lpDescription));
  std::vector<BYTE> f = query_config2(svc.h, SERVICE_CONFIG_FAILURE_ACTIONS);
  if (f.empty()) {
    set(env, o, "failureActions", nul);
  } else {
    auto* fa = reinterpret_cast<SERVICE_FAILURE_ACTIONSW*>(f.data());
    napi_value fo, list;
    napi_create_object(env, &fo);
    set_u32(env, fo, "resetPeriodSec", fa->dwResetPeriod);
    napi_create_array_with_length(env, fa->cActions, &list);
    for (DWORD i = 0; i < fa->cActions; ++i) {
      napi_value a;
      napi_create_object(env, &a);
      set_u32(env, a, "type", fa->lpsaActions[i].Type);
      set_u32(env, a, "delayMs", fa->lpsaActions[i].Delay);
      napi_set_element(env, list, i, a);
    }
    set(env, fo, "actions", list);
    set(env, o, "failureActions", fo);
  }
  std::vector<BYTE> fl = query_config2(svc.h, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG);
  set(env, o, "failureActionsOnNonCrashFailures",
      fl.empty() ? nul : make_bool(env, reinterpret_cast<SERVICE_FAILURE_ACTIONS_FLAG*>(fl.data())->fFailureActionsOnNonCrashFailures));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Security descriptors. Policy (which SIDs get what) lives in TypeScript; these only translate.

// S-1-… for a SID; nullptr with an exception pending on failure.
napi_value sid_string(napi_env env, PSID sid) {
  LocalMem s;
  if (!ConvertSidToStringSidW(sid, reinterpret_cast<wchar_t**>(&s.p))) {
    throw_win32(env, "ConvertSidToStringSidW", GetLastError());
    return nullptr;
  }
  return make_string(env, static_cast<wchar_t*>(s.p));
}

napi_value current_user_sid(napi_env env, napi_callback_info) {
  HANDLE token;
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
    throw_win32(env, "OpenProcessToken", GetLastError());
    return nullptr;
  }
  DWORD needed = 0;
  GetTokenInformation(token, TokenUser, nullptr, 0, &needed);
  std::vector<BYTE> buf(needed ? needed : 1);
  BOOL ok = GetTokenInformation(token, TokenUser, buf.data(), needed, &needed);
  DWORD err = GetLastError();
  CloseHandle(token);
  if (!ok) {
    throw_win32(env, "GetTokenInformation(TokenUser)", err);
    return nullptr;
  }
  return sid_string(env, reinterpret_cast<TOKEN_USER*>(buf.data())->User.Sid);
}

napi_value lookup_account(napi_env env, napi_callback_info info) {
  std::wstring name;
  if (!get_strings(env, info, {&name})) return nullptr;
  DWORD sid_size = 0, domain_size = 0;
  SID_NAME_USE use;
  LookupAccountNameW(nullptr, name.c_str(), nullptr, &sid_size, nullptr, &domain_size, &use);
  std::vector<BYTE> sid(sid_size ? sid_size : SECURITY_MAX_SID_SIZE);
  std::vector<wchar_t> domain(domain_size ? domain_size : 256);
  sid_size = static_cast<DWORD>(sid.size());
  domain_size = static_cast<DWORD>(domain.size());
  if (!LookupAccountNameW(nullptr, name.c_str(), sid.data(), &sid_size, domain.data(), &domain_size, &use)) {
    throw_win32(env, "LookupAccountNameW(" + u8(name) + ")", GetLastError());
    return nullptr;
  }
  return sid_string(env, sid.data());
}

bool is_allow(BYTE type) {
  return type == ACCESS_ALLOWED_ACE_TYPE || type == ACCESS_ALLOWED_OBJECT_ACE_TYPE ||
         type == ACCESS_ALLOWED_CALLBACK_ACE_TYPE || type == ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE;
}

// Where an ACE's SID starts: after the mask for the plain and callback types, after the flags
// and whichever object GUIDs are present for the object types.
PSID ace_sid(ACE_HEADER* ace) {
  switch (ace->AceType) {
    case ACCESS_ALLOWED_OBJECT_ACE_TYPE:
    case ACCESS_DENIED_OBJECT_ACE_TYPE:
    case ACCESS_ALLOWED_CALLBACK_OBJECT_ACE_TYPE:
    case ACCESS_DENIED_CALLBACK_OBJECT_ACE_TYPE: {
      auto* o = reinterpret_cast<ACCESS_ALLOWED_OBJECT_ACE*>(ace);
      BYTE* p = reinterpret_cast<BYTE*>(&o->ObjectType);
      if (o->Flags & ACE_OBJECT_TYPE_PRESENT) p += sizeof(GUID);
      if (o->Flags & ACE_INHERITED_OBJECT_TYPE_PRESENT) p += sizeof(GUID);
      return p;
    }
    default:
      return &reinterpret_cast<ACCESS_ALLOWED_ACE*>(ace)->SidStart;
  }
}

napi_value read_security(napi_env env, napi_callback_info info) {
  std::wstring path;
  if (!get_strings(env, info, {&path})) return nullptr;
  PSID owner = nullptr;
  PACL dacl = nullptr;
  LocalMem sd;
  DWORD err = GetNamedSecurityInfoW(path.c_str(), SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
                                    &owner, nullptr, &dacl, nullptr, &sd.p);
  if (err != ERROR_SUCCESS) {
    throw_win32(env, "GetNamedSecurityInfoW(" + u8(path) + ")", err);
    return nullptr;
  }
  SECURITY_DESCRIPTOR_CONTROL control = 0;
  DWORD revision;
  GetSecurityDescriptorControl(sd.p, &control, &revision);
  BOOL present = FALSE, defaulted = FALSE;
  PACL unused;
  GetSecurityDescriptorDacl(sd.p, &present, &unused, &defaulted);

  napi_value o, aces, owner_str;
  napi_create_object(env, &o);
  // "" rather than null when there is no owner: it then matches no trusted SID.
  if (!(owner_str = owner ? sid_string(env, owner) : make_string(env, std::string()))) return nullptr;
  set(env, o, "owner", owner_str);
  set(env, o, "daclPresent", make_bool(env, present && dacl));  // a NULL DACL grants everyone everything
  set(env, o, "daclProtected", make_bool(env, (control & SE_DACL_PROTECTED) != 0));
  uint32_t count = dacl ? dacl->AceCount : 0;
  napi_create_array_with_length(env, count, &aces);
  for (uint32_t i = 0; i < count; ++i) {
    ACE_HEADER* ace;
    if (!GetAce(dacl, i, reinterpret_cast<void**>(&ace))) {
      throw_win32(env, "GetAce(" + u8(path) + ")", GetLastError());
      return nullptr;
    }
    napi_value a, sid;
    napi_create_object(env, &a);
    set(env, a, "allow", make_bool(env, is_allow(ace->AceType)));
    set_u32(env, a, "type", ace->AceType);
    if (!(sid = sid_string(env, ace_sid(ace)))) return nullptr;
    set(env, a, "sid", sid);
    auto* body = reinterpret_cast<ACCESS_ALLOWED_ACE*>(ace);  // every ACE type has its mask here
    set_u32(env, a, "mask", body->Mask);
    set(env, a, "inherited", make_bool(env, (ace->AceFlags & INHERITED_ACE) != 0));
    set_u32(env, a, "flags", ace->AceFlags);
    napi_set_element(env, aces, i, a);
  }
  set(env, o, "aces", aces);
  return o;
}

// Parses SDDL into a self-relative descriptor (LocalFree'd by the holder); throws on failure.
bool parse_sddl(napi_env env, const std::wstring& sddl, LocalMem* sd) {
  if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.c_str(), SDDL_REVISION_1, &sd->p, nullptr)) {
    throw_win32(env, "ConvertStringSecurityDescriptorToSecurityDescriptorW(" + u8(sddl) + ")", GetLastError());
    return false;
  }
  return true;
}

// The owner (may be null) and DACL of a parsed descriptor; refuses one without a DACL, since
// applying that would mean a NULL DACL, i.e. full access for everyone.
bool owner_and_dacl(napi_env env, void* sd, PSID* owner, PACL* dacl) {
  BOOL present = FALSE, defaulted = FALSE;
  GetSecurityDescriptorOwner(sd, owner, &defaulted);
  GetSecurityDescriptorDacl(sd, &present, dacl, &defaulted);
  if (!present || !*dacl) {
    throw_type(env, "the SDDL must contain a DACL (D:...)");
    return false;
  }
  return true;
}

napi_value create_directory(napi_env env, napi_callback_info info) {
  std::wstring path, sddl;
  if (!get_strings(env, info, {&path, &sddl})) return nullptr;
  LocalMem sd;
  if (!parse_sddl(env, sddl, &sd)) return nullptr;
  SECURITY_ATTRIBUTES sa = {sizeof sa, sd.p, FALSE};
  if (!CreateDirectoryW(path.c_str(), &sa)) {
    DWORD err = GetLastError();
    if (err == ERROR_ALREADY_EXISTS) return make_bool(env, false);
    throw_win32(env, "CreateDirectoryW(" + u8(path) + ")", err);
    return nullptr;
  }
  return make_bool(env, true);
}

napi_value set_security(napi_env env, napi_callback_info info) {
  std::wstring path, sddl;
  if (!get_strings(env, info, {&path, &sddl})) return nullptr;
  LocalMem sd;
  PSID owner;
  PACL dacl;
  if (!parse_sddl(env, sddl, &sd) || !owner_and_dacl(env, sd.p, &owner, &dacl)) return nullptr;
  // PROTECTED: nothing is inherited from the parent any more; the DACL is exactly ours.
  SECURITY_INFORMATION what = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION |
                              (owner ? OWNER_SECURITY_INFORMATION : 0);
  DWORD err = SetNamedSecurityInfoW(&path[0], SE_FILE_OBJECT, what, owner, nullptr, dacl, nullptr);
  if (err != ERROR_SUCCESS) {
    throw_win32(env, "SetNamedSecurityInfoW(" + u8(path) + ")", err);
    return nullptr;
  }
  return undefined(env);
}

napi_value write_file_with_security(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return nullptr;
  std::wstring path, sddl;
  void* data = nullptr;
  size_t length = 0;
  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  if (!get_string(env, argv[0], &path) || !is_buffer || !get_string(env, argv[2], &sddl)) {
    throw_type(env, "writeFileWithSecurity(path: string, data: Buffer, sddl: string)");
    return nullptr;
  }
  napi_get_buffer_info(env, argv[1], &data, &length);
  LocalMem sd;
  PSID owner;
  PACL dacl;
  if (!parse_sddl(env, sddl, &sd) || !owner_and_dacl(env, sd.p, &owner, &dacl)) return nullptr;
  SECURITY_ATTRIBUTES sa = {sizeof sa, sd.p, FALSE};
  // No sharing while we write; WRITE_DAC (and WRITE_OWNER) because CreateFileW ignores the
  // descriptor when the file already exists, and then we must apply it ourselves.
  DWORD access = GENERIC_WRITE | WRITE_DAC | (owner ? WRITE_OWNER : 0);
  HANDLE h = CreateFileW(path.c_str(), access, 0, &sa, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (h == INVALID_HANDLE_VALUE) {
    throw_win32(env, "CreateFileW(" + u8(path) + ")", GetLastError());
    return nullptr;
  }
  std::string failed;
  DWORD err = NO_ERROR;
  if (GetLastError() == ERROR_ALREADY_EXISTS) {
    // Replaced an existing file (now truncated): secure it before any byte is written.
    SECURITY_INFORMATION what = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION |
                                (owner ? OWNER_SECURITY_INFORMATION : 0);
    err = SetSecurityInfo(h, SE_FILE_OBJECT, what, owner, nullptr, dacl, nullptr);
    if (err != ERROR_SUCCESS) failed = "SetSecurityInfo";
  }
  const BYTE* p = static_cast<const BYTE*>(data);
  while (failed.empty() && length > 0) {
    DWORD chunk = length > (1u << 30) ? (1u << 30) : static_cast<DWORD>(length), written = 0;
    if (!WriteFile(h, p, chunk, &written, nullptr)) {
      err = GetLastError();
      failed = "WriteFile";
    }
    p += written;
    length -= written;
  }
  if (failed.empty() && !FlushFileBuffers(h)) {
    err = GetLastError();
    failed = "FlushFileBuffers";
  }
  if (!CloseHandle(h) && failed.empty()) {
    err = GetLastError();
    failed = "CloseHandle";
  }
  if (!failed.empty()) {
    throw_win32(env, failed + "(" + u8(path) + ")", err);
    return nullptr;
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// Event log: best effort, so a logging failure never takes the service down.

napi_value report_event(napi_env env, napi_callback_info info) {
  std::wstring source, type, message;
  if (!get_strings(env, info, {&source, &type, &message})) return nullptr;
  WORD t;
  if (type == L"error") t = EVENTLOG_ERROR_TYPE;
  else if (type == L"warning") t = EVENTLOG_WARNING_TYPE;
  else if (type == L"information") t = EVENTLOG_INFORMATION_TYPE;
  else {
    throw_type(env, "reportEvent: type must be 'error', 'warning' or 'information'");
    return nullptr;
  }
  HANDLE h = RegisterEventSourceW(nullptr, source.c_str());
  if (!h) return make_bool(env, false);
  // Without a message DLL the viewer shows "description cannot be found" followed by our text.
  const wchar_t* strings[] = {message.c_str()};
  BOOL ok = ReportEventW(h, t, 0, 0, nullptr, 1, 0, strings, nullptr);
  DeregisterEventSource(h);
  return make_bool(env, ok != FALSE);
}

napi_value init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"startServiceDispatcher", nullptr, start_service_dispatcher, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setServiceStatus", nullptr, set_service_status, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"installService", nullptr, install_service, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"startService", nullptr, start_service, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"stopService", nullptr, stop_service, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"queryService", nullptr, query_service, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"deleteService", nullptr, delete_service, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"serviceConfig", nullptr, service_config, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"currentUserSid", nullptr, current_user_sid, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"lookupAccount", nullptr, lookup_account, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"readSecurity", nullptr, read_security, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"createDirectory", nullptr, create_directory, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setSecurity", nullptr, set_security, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"writeFileWithSecurity", nullptr, write_file_with_security, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"reportEvent", nullptr, report_event, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return init(env, exports); }
