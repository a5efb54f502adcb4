import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** End-to-end: the built `shoal` command as a real process, as users and scripts run it. */
const SHOAL = join(__dirname, '..', '..', '..', 'bin', 'shoal.js');

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function shoal(...args: string[]): Result {
  const run = spawnSync(process.execPath, [SHOAL, ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** A user error: exit 2, one line naming the problem, no stack trace. */
function expectUserError(result: Result, pattern: RegExp): void {
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stderr).not.toMatch(/internal error/);
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-cli-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function makeTree(name: string): Promise<string> {
  const root = join(dir, name);
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'bin', 'tool'), Buffer.alloc(40_000, 7));
  await chmod(join(root, 'bin', 'tool'), 0o755);
  await writeFile(join(root, 'data', 'big.dat'), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff)));
  await writeFile(join(root, 'data', 'empty'), '');
  return root;
}

async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = (byte[0] as number) ^ 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

describe('shoal pack / inspect / verify', () => {
  let tree: string;
  let pkg: string;

  beforeAll(async () => {
    tree = await makeTree('app-1.0');
    pkg = join(dir, 'app.torrent');
  });

  test('pack writes a package and prints its info-hash, without progress noise off a TTY', () => {
    const result = shoal('pack', tree, '-o', pkg, '--piece-length', '64K', '--webseed', 'https://cdn.example/app/');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^[0-9a-f]{64} {2}.*app\.torrent \(3 files, /);
    expect(result.stderr).toBe('');
  });

  test('pack --json', () => {
    const result = shoal('pack', tree, '-o', join(dir, 'app2.torrent'), '--json', '--piece-length', '65536');
    expect(result.status).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary).toMatchObject({ name: 'app-1.0', files: 3, pieceLength: 65536, totalLength: 340_000 });
    expect(summary.infoHash).toMatch(/^[0-9a-f]{64}$/);
  });

  test('inspect shows name, info-hash, size, piece length and files', () => {
    const result = shoal('inspect', pkg);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/name: +app-1\.0/);
    expect(result.stdout).toMatch(/info-hash: +[0-9a-f]{64}/);
    expect(result.stdout).toMatch(/piece length: +64\.0 KiB/);
    expect(result.stdout).toMatch(/x app-1\.0\/bin\/tool/);
    expect(result.stdout).toMatch(/webseeds: +https:\/\/cdn\.example\/app\//);
  });

  test('inspect --json', () => {
    const result = shoal('inspect', pkg, '--json');
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.files.map((f: { path: string }) => f.path)).toEqual(['app-1.0/bin/tool', 'app-1.0/data/big.dat', 'app-1.0/data/empty']);
    expect(report.files[0].executable).toBe(true);
    expect(report.wireInfoHash).toBe(report.infoHash.slice(0, 40));
    expect(report.pieces).toBe(1 + 5);
  });

  test('verify passes on intact data', () => {
    const result = shoal('verify', pkg, tree);
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^ok: 3 files/);
  });

  test('verify names the corrupt file and piece and exits 1', async () => {
    const copy = await makeTree('corrupt');
    await flipByte(join(copy, 'data', 'big.dat'), 2 * 65536 + 5);
    const result = shoal('verify', pkg, copy);
    expect(result.status).toBe(1);
    // big.dat is the second file: its pieces are 1..5, and the flipped byte is in its third.
    expect(result.stdout).toMatch(/app-1\.0\/data\/big\.dat: corrupt \(bad pieces: 3\)/);
    expect(result.stdout).toMatch(/FAILED: 1 of 3 files bad, 1 of 6 pieces bad/);
    const json = JSON.parse(shoal('verify', pkg, copy, '--json').stdout);
    expect(json.badPieces).toEqual([3]);
  });

  test('verify reports missing and wrong-size files', async () => {
    const copy = await makeTree('damaged');
    await rm(join(copy, 'bin', 'tool'));
    await truncate(join(copy, 'data', 'big.dat'), 100_000);
    const result = shoal('verify', pkg, copy);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/app-1\.0\/bin\/tool: missing/);
    expect(result.stdout).toMatch(/app-1\.0\/data\/big\.dat: wrong-size: 100000 bytes, expected 300000/);
  });

  test('a single file packs, and verifies given the file or its folder', async () => {
    const folder = join(dir, 'single');
    await mkdir(folder);
    const file = join(folder, 'image.iso');
    await writeFile(file, Buffer.alloc(100_000, 1));
    const out = join(dir, 'image.torrent');
    expect(shoal('pack', file, '-o', out).status).toBe(0);
    expect(shoal('verify', out, file).status).toBe(0);
    expect(shoal('verify', out, folder).status).toBe(0);
  });

  test('--ca binds the package to a fleet CA; a non-CA certificate is refused', async () => {
    const ca = join(dir, 'ca.pem');
    const leaf = join(dir, 'leaf.pem');
    for (const [out, ext] of [
      [ca, 'basicConstraints=critical,CA:TRUE'],
      [leaf, 'basicConstraints=critical,CA:FALSE'],
    ] as const) {
      const made = spawnSync('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null',
        '-subj', '/CN=Test Fleet CA', '-days', '1', '-addext', ext, '-out', out,
      ]);
      expect(made.status).toBe(0);
    }
    const bound = join(dir, 'bound.torrent');
    expect(shoal('pack', tree, '-o', bound, '--ca', ca).status).toBe(0);
    expect(shoal('inspect', bound).stdout).toMatch(/fleet CA: +CN=Test Fleet CA \(sha256 /);
    const pem = await readFile(ca, 'utf8');
    expect(JSON.parse(shoal('inspect', bound, '--json').stdout).ca.subject).toBe('CN=Test Fleet CA');
    expect(pem).toMatch(/BEGIN CERTIFICATE/);
    expectUserError(shoal('pack', tree, '-o', join(dir, 'x.torrent'), '--ca', leaf), /leaf\.pem: certificate "CN=Test Fleet CA" is not a CA certificate/);
    expectUserError(shoal('pack', tree, '-o', join(dir, 'x.torrent'), '--ca', pkg), /app\.torrent: not a PEM certificate/);
  });
});

describe('usage and bad input exit 2 with a one-line reason', () => {
  test('no command prints usage', () => {
    const result = shoal();
    expect(result.status).toBe(2);
    expect(result.stdout).toMatch(/usage: shoal <command>/);
  });

  test('--help and per-command help exit 0', () => {
    expect(shoal('--help').status).toBe(0);
    const help = shoal('pack', '--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--piece-length N/);
  });

  test('unknown command and unknown option', () => {
    expectUserError(shoal('frobnicate'), /unknown command "frobnicate"/);
    expectUserError(shoal('inspect', '--bogus', 'x'), /shoal inspect: Unknown option '--bogus'/);
  });

  test('pack without -o, with a bad piece length, or of a missing path', async () => {
    expectUserError(shoal('pack', dir), /pack needs -o/);
    expectUserError(shoal('pack', dir, '-o', join(dir, 'o.torrent'), '--piece-length', 'lots'), /--piece-length: "lots" is not a size/);
    expectUserError(shoal('pack', dir, '-o', join(dir, 'o.torrent'), '--piece-length', '1000'), /piece length 1000 must be a power of two/);
    expectUserError(shoal('pack', join(dir, 'nope'), '-o', join(dir, 'o.torrent')), /nope: no such file or directory/);
    expectUserError(shoal('pack', dir, '-o', join(dir, 'o.torrent'), '--webseed', 'ftp://x/'), /url-list\[0\]: "ftp:\/\/x\/" is not http\(s\)/);
  });

  test('pack refuses symlinks and empty folders', async () => {
    const root = join(dir, 'links');
    await mkdir(join(root, 'empty-dir'), { recursive: true });
    expectUserError(shoal('pack', root, '-o', join(dir, 'l.torrent')), /links: contains no files/);
    await writeFile(join(root, 'real'), 'x');
    await symlink(join(root, 'real'), join(root, 'link'));
    expectUserError(shoal('pack', root, '-o', join(dir, 'l.torrent')), /link: symbolic links are not supported/);
  });

  test('inspect and verify refuse garbage, truncated and oversized package files', async () => {
    const garbage = join(dir, 'garbage.torrent');
    await writeFile(garbage, 'this is not bencode');
    expectUserError(shoal('inspect', garbage), /garbage\.torrent: not a valid package: not valid bencode: unexpected byte 0x74 at byte 0/);
    const good = join(dir, 'trunc-src');
    await mkdir(good);
    await writeFile(join(good, 'f'), 'hello');
    const whole = join(dir, 'whole.torrent');
    expect(shoal('pack', good, '-o', whole).status).toBe(0);
    const bytes = await readFile(whole);
    const truncated = join(dir, 'truncated.torrent');
    await writeFile(truncated, bytes.subarray(0, bytes.length - 3));
    expectUserError(shoal('verify', truncated, good), /truncated\.torrent: not a valid package: not valid bencode: input ends inside a value/);
    const huge = join(dir, 'huge.torrent');
    await writeFile(huge, '');
    await truncate(huge, 65 * 1024 * 1024);
    expectUserError(shoal('inspect', huge), /huge\.torrent: 68157440 bytes is larger than any package file may be/);
    expectUserError(shoal('inspect', join(dir, 'absent.torrent')), /absent\.torrent: no such file or directory/);
  });

  test('verify of a multi-file package against a plain file', async () => {
    const file = join(dir, 'plain');
    await writeFile(file, 'x');
    const src = join(dir, 'multi');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    await writeFile(join(src, 'b'), 'b');
    const out = join(dir, 'multi.torrent');
    expect(shoal('pack', src, '-o', out).status).toBe(0);
    expectUserError(shoal('verify', out, file), /plain: is not a folder, and the package holds several files/);
  });
});
