// Generation slots: at most maxActive generations run at once; the rest wait in a FairQueue, cancellable by signal.
// @ts-check
'use strict';

const { DynamoeError } = require('../..');
const { FairQueue } = require('./fair-queue');

/**
 * A request waiting for a slot.
 * @typedef {object} Ticket
 * @property {string} client
 * @property {AbortSignal} signal
 * @property {(release: () => void) => void} resolve
 * @property {(error: unknown) => void} reject
 * @property {() => void} onAbort
 */

class GenerationScheduler {
  /** @param {{ maxActive: number, maxQueued: number }} limits */
  constructor({ maxActive, maxQueued }) {
    if (!Number.isInteger(maxActive) || maxActive < 1) {
      throw new RangeError(`maxActive must be an integer >= 1, got ${String(maxActive)}`);
    }
    this.maxActive = maxActive;
    /** @type {FairQueue<Ticket>} */
    this.queue = new FairQueue(maxQueued);
    this.running = 0;
    /** @type {unknown} set by close(): every later request is refused with it */
    this.closedWith = undefined;
  }

  /** Generations running now. */
  get active() {
    return this.running;
  }

  /** Requests waiting for a slot. */
  get queued() {
    return this.queue.size;
  }

  /**
   * Asks for a slot for `client`: null when every slot is taken and the queue is full; otherwise a promise of the
   * slot's release function (call it once the generation ends). The promise rejects with ERR_DYNAMOE_ABORTED when
   * `signal` aborts while waiting; the request then leaves the queue.
   * @param {string} client
   * @param {AbortSignal} signal
   * @returns {Promise<() => void> | null}
   */
  tryAcquire(client, signal) {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    if (signal.aborted) return Promise.reject(abortedWhileQueued());
    // Nobody waits while a slot is free (release() hands slots to the queue at once), so a free slot is ours.
    if (this.running < this.maxActive) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.queue.full) return null;
    return new Promise((resolve, reject) => {
      /** @type {Ticket} */
      const ticket = {
        client,
        signal,
        resolve,
        reject,
        onAbort: () => {
          if (this.queue.remove(client, ticket)) reject(abortedWhileQueued());
        },
      };
      this.queue.push(client, ticket);
      signal.addEventListener('abort', ticket.onAbort, { once: true });
    });
  }

  /**
   * Refuses every waiting and later request with `error` (running generations are the caller's to abort).
   * @param {unknown} error
   */
  close(error) {
    this.closedWith = error;
    for (const ticket of this.queue.drain()) {
      ticket.signal.removeEventListener('abort', ticket.onAbort);
      ticket.reject(error);
    }
  }

  /**
   * A release function that frees its slot once, however often it is called.
   * @private
   */
  releaser() {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.running--;
      this.startWaiting();
    };
  }

  /**
   * Hands free slots to waiting requests, clients in turn.
   * @private
   */
  startWaiting() {
    while (this.running < this.maxActive && this.queue.size > 0) {
      const ticket = /** @type {Ticket} */ (this.queue.shift());
      ticket.signal.removeEventListener('abort', ticket.onAbort);
      this.running++;
      ticket.resolve(this.releaser());
    }
  }
}

function abortedWhileQueued() {
  return new DynamoeError('ERR_DYNAMOE_ABORTED', 'the request was cancelled while it waited in the queue');
}

module.exports = { GenerationScheduler };
