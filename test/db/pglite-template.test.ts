import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { seedFromTemplate } from '../../src/db/pglite-template.ts';
import { tempDir } from '../support/process.ts';

describe('the initdb template for empty data dirs', () => {
  it('copies the template whole into pgdata, leaving nothing half-copied beside it', () => {
    const template = tempDir('template');
    writeFileSync(path.join(template, 'PG_VERSION'), '17\n');
    mkdirSync(path.join(template, 'base', '1'), { recursive: true });
    writeFileSync(path.join(template, 'base', '1', '1259'), 'catalog');
    const dataDir = tempDir('seeded');
    const pgdata = path.join(dataDir, 'pgdata');

    expect(seedFromTemplate(pgdata, template)).toBe(true);
    expect(readFileSync(path.join(pgdata, 'PG_VERSION'), 'utf8')).toBe('17\n');
    expect(readFileSync(path.join(pgdata, 'base', '1', '1259'), 'utf8')).toBe('catalog');
    expect(readdirSync(dataDir)).toEqual(['pgdata']);
  });

  it('says there is none when the template holds no cluster, and creates nothing', () => {
    const dataDir = tempDir('unseeded');
    const pgdata = path.join(dataDir, 'pgdata');
    expect(seedFromTemplate(pgdata, tempDir('no-template'))).toBe(false);
    expect(existsSync(pgdata)).toBe(false);
  });
});
