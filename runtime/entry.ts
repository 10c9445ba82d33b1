// The bundle's entry: checks the Node it runs on before anything loads node:sqlite (Node 24's),
// so an older Node gets one line instead of a stack trace. The single binaries carry Node 24.
const NEEDED_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (major < NEEDED_MAJOR) {
  process.stderr.write(
    `hsm-driver: needs Node ${NEEDED_MAJOR} (node:sqlite), this is Node ${process.versions.node}; ` +
      'use the single binary (dist/hsm-driver-linux-x64, no Node needed) or the pinned Node: node_modules/.bin/node dist/hsm-driver.cjs …\n',
  );
  process.exitCode = 2;
} else {
  // Loaded only now: the CLI's imports include node:sqlite.
  require('./main.js');
}
