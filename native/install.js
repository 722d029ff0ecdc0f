#!/usr/bin/env node
// `npm install` of dynamoe: keeps a prebuilt (or already built) CPU binary that loads here; otherwise, or with
// `npm install --build-from-source`, compiles the CPU addon with node-gyp. node-gyp downloads Node's headers unless
// told where they are, so it is pointed at the running Node's own headers when that install has them (official
// Node tarballs and most distributions do): then compiling downloads nothing either.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');

function loadsHere() {
  try {
    require(require('node-gyp-build').resolve(root));
    return true;
  } catch {
    return false;
  }
}

// The headers of the running Node, when its install has them and they are this exact version.
function localHeaders() {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  try {
    const header = fs.readFileSync(path.join(prefix, 'include', 'node', 'node_version.h'), 'utf8');
    const part = (name) => new RegExp(`#define ${name} (\\d+)`).exec(header)?.[1];
    const version = `v${part('NODE_MAJOR_VERSION')}.${part('NODE_MINOR_VERSION')}.${part('NODE_PATCH_VERSION')}`;
    return version === process.version ? prefix : undefined;
  } catch {
    return undefined;
  }
}

function nodeGypCommand() {
  // npm names its bundled node-gyp in npm_config_node_gyp; elsewhere, a node-gyp on PATH.
  const bundled = process.env.npm_config_node_gyp;
  return bundled && fs.existsSync(bundled) ? [process.execPath, bundled] : ['node-gyp'];
}

if (process.env.npm_config_build_from_source !== 'true' && loadsHere()) process.exit(0);

const args = ['rebuild'];
if (!process.env.npm_config_nodedir) {
  const headers = localHeaders();
  if (headers) args.push(`--nodedir=${headers}`);
  else console.log(`dynamoe: this Node install has no headers of ${process.version}; node-gyp will download them`);
}
const [command, ...prefix] = nodeGypCommand();
console.log(`dynamoe: compiling the CPU addon: ${[command, ...prefix, ...args].join(' ')}`);
const result = spawnSync(command, [...prefix, ...args], { cwd: root, stdio: 'inherit' });
if (result.error) console.error(`dynamoe: could not run node-gyp: ${result.error.message}`);
process.exit(result.status ?? 1);
