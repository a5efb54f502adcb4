import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Metainfo, parseMetainfo } from '@shoal/torrent';

/**
 * The packages this agent holds or is fetching: each release's verified metainfo and its name,
 * kept next to the store so a restarted agent resumes and seeds without asking anyone.
 */
export interface CatalogEntry {
  name: string;
  version: string;
  infoHashHex: string;
  metainfo: Metainfo;
  metainfoBytes: Buffer;
}

export class Catalog {
  constructor(private readonly dir: string) {}

  async add(entry: Omit<CatalogEntry, 'metainfo' | 'infoHashHex'>): Promise<CatalogEntry> {
    const metainfo = parseMetainfo(entry.metainfoBytes);
    const infoHashHex = metainfo.infoHash.toString('hex');
    await mkdir(this.dir, { recursive: true });
    const base = join(this.dir, infoHashHex);
    await writeAtomic(`${base}.torrent`, entry.metainfoBytes);
    await writeAtomic(`${base}.json`, Buffer.from(JSON.stringify({ name: entry.name, version: entry.version })));
    return { ...entry, infoHashHex, metainfo };
  }

  async list(): Promise<CatalogEntry[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const entries: CatalogEntry[] = [];
    for (const name of names.filter((n) => /^[0-9a-f]{64}\.json$/.test(n)).sort()) {
      const infoHashHex = name.slice(0, 64);
      const release = JSON.parse(await readFile(join(this.dir, name), 'utf8')) as { name: string; version: string };
      const metainfoBytes = await readFile(join(this.dir, `${infoHashHex}.torrent`));
      const metainfo = parseMetainfo(metainfoBytes);
      if (metainfo.infoHash.toString('hex') !== infoHashHex) continue;
      entries.push({ ...release, infoHashHex, metainfo, metainfoBytes });
    }
    return entries;
  }
}

async function writeAtomic(path: string, bytes: Buffer): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, bytes);
  await rename(temporary, path);
}
