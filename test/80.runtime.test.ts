// Process-wide CPU settings: DYNAMOE_THREADS sets the pool size at start-up; setThreads changes it later.
import { execFileSync } from 'child_process';
import * as path from 'path';
import { getThreads, setThreads } from '../lib';

const root = path.resolve(__dirname, '..');

function threadsInChild(env: Record<string, string>): number {
  const script = `process.stdout.write(String(require(${JSON.stringify(root)}).getThreads()))`;
  return Number(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }));
}

describe('thread pool size', () => {
  it('DYNAMOE_THREADS sets the default', () => {
    expect(threadsInChild({ DYNAMOE_THREADS: '1' })).toBe(1);
    expect(threadsInChild({ DYNAMOE_THREADS: '3' })).toBe(3);
  });

  it('an invalid DYNAMOE_THREADS falls back to the core count', () => {
    const cores = threadsInChild({ DYNAMOE_THREADS: '' });
    expect(cores).toBeGreaterThanOrEqual(1);
    expect(threadsInChild({ DYNAMOE_THREADS: 'many' })).toBe(cores);
    expect(threadsInChild({ DYNAMOE_THREADS: '0' })).toBe(cores);
  });

  it('setThreads changes the pool size and getThreads reports it', () => {
    const original = getThreads();
    try {
      setThreads(3);
      expect(getThreads()).toBe(3);
      setThreads(1);
      expect(getThreads()).toBe(1);
    } finally {
      setThreads(original);
    }
    expect(getThreads()).toBe(original);
  });
});
