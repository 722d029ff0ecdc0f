// Admission of generations: at most maxRunning run at once, at most maxWaiting wait (first come, first served).
import { DynamoeError } from '../errors';
import { ServeError } from './serve-error';

interface Waiter {
  signal: AbortSignal;
  resolve: (release: () => void) => void;
  reject: (error: unknown) => void;
  onAbort: () => void;
}

/** Generation slots; a request holds one from admission until its generation ends, however it ends. */
export class AdmissionQueue {
  private runningCount = 0;
  private readonly waiters: Waiter[] = [];
  private closedWith: unknown = undefined;

  constructor(
    readonly maxRunning: number,
    readonly maxWaiting: number,
  ) {
    if (!Number.isInteger(maxRunning) || maxRunning < 1) {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `maxSequences must be an integer >= 1, got ${String(maxRunning)}`);
    }
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `maxQueue must be an integer >= 0, got ${String(maxWaiting)}`);
    }
  }

  /** Generations holding a slot. */
  get running(): number {
    return this.runningCount;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * A slot's release function (call it once the generation ends; later calls do nothing). Rejects at once with 429
   * when every slot is taken and the queue is full, with the close() error once closed, and with
   * ERR_DYNAMOE_ABORTED when `signal` aborts while waiting (the request then leaves the queue).
   */
  acquire(signal: AbortSignal): Promise<() => void> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    if (signal.aborted) return Promise.reject(abortedWhileWaiting());
    // Nobody waits while a slot is free (a release hands its slot to the queue at once), so a free slot is ours.
    if (this.runningCount < this.maxRunning) {
      this.runningCount++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxWaiting) {
      const message =
        `all ${this.maxRunning} sequence slot(s) are busy and the queue is full ` +
        `(${this.waiters.length} waiting); try again later`;
      return Promise.reject(new ServeError(429, 'queue_full', message));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        signal,
        resolve,
        reject,
        onAbort: () => {
          const at = this.waiters.indexOf(waiter);
          if (at < 0) return;
          this.waiters.splice(at, 1);
          reject(abortedWhileWaiting());
        },
      };
      this.waiters.push(waiter);
      signal.addEventListener('abort', waiter.onAbort, { once: true });
    });
  }

  /** Refuses every waiting and later request with `error` (running generations are the caller's to end). */
  close(error: unknown): void {
    this.closedWith = error;
    for (const waiter of this.waiters.splice(0)) {
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.reject(error);
    }
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.runningCount--;
      this.admitWaiting();
    };
  }

  private admitWaiting(): void {
    while (this.runningCount < this.maxRunning && this.waiters.length > 0) {
      const waiter = this.waiters.shift() as Waiter;
      waiter.signal.removeEventListener('abort', waiter.onAbort);
      this.runningCount++;
      waiter.resolve(this.releaser());
    }
  }
}

function abortedWhileWaiting(): DynamoeError {
  return new DynamoeError('ERR_DYNAMOE_ABORTED', 'the request was cancelled while it waited in the queue');
}
