import { readdir } from 'node:fs/promises';
import { FileMetadataStore } from '../src';
import { TempDirs } from './support';

const dirs = new TempDirs();
afterAll(() => dirs.cleanup());

describe('FileMetadataStore', () => {
  test('reads back what it wrote, under nested names, and undefined for the rest', async () => {
    const store = new FileMetadataStore(await dirs.make());
    await store.write('timestamp.json', Buffer.from('one'));
    await store.write('targets/app/abc.1.0.0+b.torrent', Buffer.from('two'));
    await store.write('timestamp.json', Buffer.from('three'));
    expect((await store.read('timestamp.json'))?.toString()).toBe('three');
    expect((await store.read('targets/app/abc.1.0.0+b.torrent'))?.toString()).toBe('two');
    expect(await store.read('1.root.json')).toBeUndefined();
  });

  test('refuses names that could leave its directory or hide a file', async () => {
    const store = new FileMetadataStore(await dirs.make());
    for (const name of ['', '../x', 'a/../b', '/etc/passwd', 'a//b', '.tmp', 'a/.b', 'a\\b', 'a/']) {
      await expect(store.read(name)).rejects.toMatchObject({ code: 'TRUST_BAD_STORE_NAME' });
      await expect(store.write(name, Buffer.from('x'))).rejects.toMatchObject({ code: 'TRUST_BAD_STORE_NAME' });
    }
  });

  test('concurrent writes of one name leave one whole value and no temp files', async () => {
    const dir = await dirs.make();
    const store = new FileMetadataStore(dir);
    const values = Array.from({ length: 20 }, (_, i) => Buffer.alloc(64 * 1024, i));
    await Promise.all(values.map((value) => store.write('timestamp.json', value)));
    const result = (await store.read('timestamp.json')) as Buffer;
    expect(values.some((value) => value.equals(result))).toBe(true);
    expect(await readdir(dir)).toEqual(['timestamp.json']);
  });
});
