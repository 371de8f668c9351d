// build.ps1 against build.sh, without PowerShell (none is packaged for these
// machines): the script must parse as PowerShell (tree-sitter's grammar: no
// ERROR or MISSING node), and its top-level switch must offer the same
// commands as build.sh's case statement.
//   node check.mjs GRAMMAR.wasm build.ps1 build.sh
import { Parser, Language } from 'web-tree-sitter';
import fs from 'fs';

const [wasm, ps1Path, shPath] = process.argv.slice(2);
await Parser.init();
const parser = new Parser();
parser.setLanguage(await Language.load(wasm));
const ps1 = fs.readFileSync(ps1Path, 'utf8');
const tree = parser.parse(ps1);
let problems = 0;
(function walk(n) {
  if (n.type === 'ERROR' || n.isMissing) {
    problems++;
    const text = ps1.slice(n.startIndex, Math.min(n.endIndex, n.startIndex + 60)).replace(/\n/g, '\\n');
    console.log(`${ps1Path}:${n.startPosition.row + 1}: ${n.isMissing ? 'missing ' + n.type : 'syntax error'} near "${text}"`);
  }
  for (const c of n.children) walk(c);
})(tree.rootNode);

// Commands: the labels of `switch ($Command) { "x" {...} { $_ -in "a", "b" } {...} }`
// and of build.sh's `case "${1:-build}" in x) ...; a | b) ...`.
const ps1Commands = new Set();
const sw = ps1.slice(ps1.indexOf('switch ($Command)'));
for (const m of sw.matchAll(/^    (?:"([a-z-]+)"|\{ \$_ -in ((?:"[a-z-]+"(?:, )?)+) \}) \{/gm)) {
  if (m[1]) ps1Commands.add(m[1]);
  else for (const q of m[2].matchAll(/"([a-z-]+)"/g)) ps1Commands.add(q[1]);
}
const sh = fs.readFileSync(shPath, 'utf8');
const shCommands = new Set();
const cs = sh.slice(sh.indexOf('case "${1:-build}" in'));
for (const m of cs.matchAll(/^  ([a-z-]+(?: \| [a-z-]+)*)\)/gm))
  for (const c of m[1].split(' | ')) shCommands.add(c);
const onlySh = [...shCommands].filter(c => !ps1Commands.has(c));
const onlyPs1 = [...ps1Commands].filter(c => !shCommands.has(c));
if (shCommands.size === 0 || ps1Commands.size === 0) {
  console.log('could not find the command lists');
  problems++;
}
if (onlySh.length) { console.log(`build.sh commands missing from build.ps1: ${onlySh.join(', ')}`); problems++; }
if (onlyPs1.length) { console.log(`build.ps1 commands missing from build.sh: ${onlyPs1.join(', ')}`); problems++; }
console.log(problems ? `${problems} problems` :
  `build.ps1 parses cleanly and offers build.sh's ${shCommands.size} commands: ${[...shCommands].sort().join(' ')}`);
process.exit(problems ? 1 : 0);
