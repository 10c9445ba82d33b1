// `hsm-driver service install` on Linux: writes a hardened systemd unit that runs this binary
// as a dedicated user, with the PIN handed over as a systemd credential (never in the unit or
// the environment file), plus an environment-file template; creates the user if it is missing.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';

export interface ServiceOptions {
  /** Absolute path of the hsm-driver binary the unit starts. */
  execPath: string;
  name: string;
  user: string;
  unitDir: string;
  configDir: string;
  /** Extra writable paths (a SoftHSM token dir, a vendor client's state). */
  readWritePaths: string[];
}

export function unitFile(o: ServiceOptions): string {
  const cfg = o.configDir;
  return `# Written by \`hsm-driver service install\`. Settings live in ${cfg}/${o.name}.env;
# the PIN in ${cfg}/user.pin (root-owned, 0600), handed to the service as a credential.
[Unit]
Description=hsm-driver: stateless PKCS#11 signer polling the job API over mTLS
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${o.user}
Group=${o.user}
ExecStart=${o.execPath} run
EnvironmentFile=${cfg}/${o.name}.env
LoadCredential=user-pin:${cfg}/user.pin
Environment=USER_PIN_FILE=%d/user-pin
# Keys (SQLite, unless POSTGRES_URL is set) and the extracted PKCS#11 addon, private to the unit.
StateDirectory=${o.name}
StateDirectoryMode=0700
CacheDirectory=${o.name}
CacheDirectoryMode=0700
Environment=SQLITE_PATH=%S/${o.name}/keys.db
Environment=XDG_CACHE_HOME=%C
# SIGTERM drains running jobs (DRAIN_TIMEOUT, default 30 s) before the driver exits.
KillSignal=SIGTERM
TimeoutStopSec=45
Restart=on-failure
RestartSec=5
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
${o.readWritePaths.length > 0 ? `ReadWritePaths=${o.readWritePaths.join(' ')}\n` : ''}# Not MemoryDenyWriteExecute: V8's JIT needs writable executable memory. Not PrivateDevices:
# PCIe HSMs (Luna PCIe, some Utimaco) are device nodes.

[Install]
WantedBy=multi-user.target
`;
}

export function envTemplate(): string {
  return `# hsm-driver settings (see \`hsm-driver run --help\`). The PIN does not belong here.
PROXY_ADDR=api.example.com:8443
CLIENT_CERT=/etc/hsm-driver/driver-chain.pem
CLIENT_KEY=/etc/hsm-driver/driver.key
CA_CERT=/etc/hsm-driver/api-ca.pem
PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
TOKEN_LABEL=hsm-driver
MASTER_KEY_LABEL=master
# POSTGRES_URL=postgres://hsm@db.example.com/hsm
# RESIDENT_ALGORITHMS=eddsa-ed25519
`;
}

/** Writes the unit (and, if absent, the env template), creating the user when needed. */
export function installService(o: ServiceOptions, createUser: boolean): string[] {
  if (process.platform !== 'linux') throw new ConfigError('service install writes a systemd unit and is for Linux only');
  if (!o.execPath.startsWith('/')) throw new ConfigError(`--exec-path must be absolute, got "${o.execPath}"`);
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw new ConfigError(`--user "${o.user}" is not a valid user name`);
  const done: string[] = [];
  if (createUser && !userExists(o.user)) {
    execFileSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', o.user], { stdio: 'pipe' });
    done.push(`created system user ${o.user}`);
  }
  mkdirSync(o.configDir, { recursive: true, mode: 0o755 });
  const env = join(o.configDir, `${o.name}.env`);
  if (!existsSync(env)) {
    writeFileSync(env, envTemplate(), { mode: 0o640 });
    done.push(`wrote ${env} (edit it)`);
  }
  const unit = join(o.unitDir, `${o.name}.service`);
  mkdirSync(dirname(unit), { recursive: true });
  writeFileSync(unit, unitFile(o));
  chmodSync(unit, 0o644);
  done.push(`wrote ${unit}`);
  done.push(`next: put the PIN in ${join(o.configDir, 'user.pin')} (root, 0600), then: systemctl daemon-reload && systemctl enable --now ${o.name}`);
  return done;
}

function userExists(user: string): boolean {
  try {
    execFileSync('id', ['-u', user], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** What `service status` prints for systemd's ActiveState, in the SCM's words used on Windows. */
const STATE_NAMES: Record<string, string> = {
  active: 'RUNNING',
  reloading: 'RUNNING',
  inactive: 'STOPPED',
  failed: 'STOPPED (failed)',
  activating: 'START_PENDING',
  deactivating: 'STOP_PENDING',
};

/** `service start|stop|status|uninstall` on Linux, through systemctl. */
export function systemctlVerb(action: 'start' | 'stop' | 'status' | 'uninstall', name: string, unitDir = '/etc/systemd/system'): string[] {
  const systemctl = (...args: string[]) => {
    try {
      return execFileSync('systemctl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch (err) {
      const e = err as { code?: string; stderr?: string; message: string };
      if (e.code === 'ENOENT') throw new ConfigError('systemctl not found: service start/stop/status/uninstall drive systemd');
      throw new ConfigError(`systemctl ${args.join(' ')}: ${(e.stderr || e.message).trim().split('\n')[0]}`);
    }
  };
  const unit = `${name}.service`;
  switch (action) {
    case 'start':
      systemctl('start', unit);
      return [`started ${name}`];
    case 'stop':
      systemctl('stop', unit); // returns once the drain is over (TimeoutStopSec bounds it)
      return [`stopped ${name}`];
    case 'status': {
      const state = systemctl('show', '-p', 'ActiveState', '--value', unit);
      return [STATE_NAMES[state] ?? state.toUpperCase()];
    }
    case 'uninstall': {
      systemctl('disable', '--now', unit);
      rmSync(join(unitDir, unit), { force: true });
      systemctl('daemon-reload');
      return [`removed ${join(unitDir, unit)} (the env file, PIN and state directory stay)`];
    }
  }
}
