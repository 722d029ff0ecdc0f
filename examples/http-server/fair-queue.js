// A bounded queue of waiting items kept per client and served round-robin, so one flooding client cannot starve others.
// @ts-check
'use strict';

/** @template T */
class FairQueue {
  /** @param {number} maxSize most items waiting over all clients together */
  constructor(maxSize) {
    if (!Number.isInteger(maxSize) || maxSize < 0) {
      throw new RangeError(`maxSize must be an integer >= 0, got ${String(maxSize)}`);
    }
    this.maxSize = maxSize;
    /** @type {Map<string, T[]>} each client's waiting items, oldest first; a client is removed when it has none */
    this.byClient = new Map();
    /** @type {string[]} clients with waiting items, the next one to serve first */
    this.turns = [];
    this.count = 0;
  }

  /** Items waiting over all clients. */
  get size() {
    return this.count;
  }

  get full() {
    return this.count >= this.maxSize;
  }

  /** Items waiting for one client. @param {string} client */
  sizeOf(client) {
    return this.byClient.get(client)?.length ?? 0;
  }

  /**
   * Appends `item` to `client`'s queue; false (and nothing queued) when the queue is full.
   * @param {string} client
   * @param {T} item
   */
  push(client, item) {
    if (this.full) return false;
    const items = this.byClient.get(client);
    if (items) {
      items.push(item);
    } else {
      this.byClient.set(client, [item]);
      this.turns.push(client); // a new client waits behind the clients already waiting, not behind their items
    }
    this.count++;
    return true;
  }

  /**
   * Takes the oldest item of the client whose turn it is; that client then goes to the back.
   * @returns {T | undefined}
   */
  shift() {
    const client = this.turns.shift();
    if (client === undefined) return undefined;
    const items = /** @type {T[]} */ (this.byClient.get(client));
    const item = /** @type {T} */ (items.shift());
    if (items.length > 0) this.turns.push(client);
    else this.byClient.delete(client);
    this.count--;
    return item;
  }

  /**
   * Removes a waiting item (its client gave up); false when it was not waiting.
   * @param {string} client
   * @param {T} item
   */
  remove(client, item) {
    const items = this.byClient.get(client);
    const at = items ? items.indexOf(item) : -1;
    if (!items || at < 0) return false;
    items.splice(at, 1);
    if (items.length === 0) {
      this.byClient.delete(client);
      this.turns.splice(this.turns.indexOf(client), 1);
    }
    this.count--;
    return true;
  }

  /**
   * Removes and returns every waiting item, in serving order.
   * @returns {T[]}
   */
  drain() {
    /** @type {T[]} */
    const items = [];
    while (this.count > 0) items.push(/** @type {T} */ (this.shift()));
    return items;
  }
}

module.exports = { FairQueue };
