/* Writing to a connection (a client's, or a bus link) with as few system
 * calls as possible.
 *
 * A socket bufferevent writes by arming its write event, waiting for the
 * socket to become writable, writing, and disarming the event once its
 * output is empty: with epoll that is two epoll_ctl calls and a trip
 * through the loop around every write. A daemon that sends small answers
 * and frames to sockets that are almost always writable pays more for that
 * than for the writes themselves.
 *
 * So the write event stays disabled while the output is empty. Whoever
 * queues bytes calls conn_write_flush. On a plain socket it writes them
 * straight to the socket; only what the kernel would not take is left to
 * the bufferevent, whose write event is then enabled until it is written
 * (conn_write_drained, from the write callback, disables it again). On a
 * layered (TLS) bufferevent it runs the filter over everything queued, so
 * that the frames queued since the last flush (every event of one bus
 * read) become one TLS record instead of one record each; the socket
 * underneath writes the records through its own bufferevent.
 *
 * Ordering is kept: bytes are only ever written from the front of the
 * output, by the bufferevent or by conn_write_flush, never both at once.
 */
#ifndef EVS_CONN_WRITE_H
#define EVS_CONN_WRITE_H

struct bufferevent;
struct timeval;

/* Enables reading on a connection's bufferevent, and disables writing
 * unless bytes are already queued (then the bufferevent writes them, and
 * conn_write_drained turns writing off after). Call once, when the
 * connection is set up (and connected). */
void conn_write_enable(struct bufferevent *bev);

/* Hands what bev's output holds on now: a plain socket whose write event
 * is idle writes it to the kernel, and leaves what the kernel does not
 * take (or a write error, which the bufferevent then reports through its
 * event callback) to the bufferevent; a layered one encrypts it into the
 * layer below. Call after queuing output. */
void conn_write_flush(struct bufferevent *bev);

/* Sets how long queued bytes may wait for the socket to take more before
 * the bufferevent reports BEV_EVENT_TIMEOUT|BEV_EVENT_WRITING (NULL: no
 * limit); no read timeout. On a layered connection the timeout belongs to
 * the socket underneath, where the bytes wait: the filter's own would
 * count from the last encryption, not from the last progress. */
void conn_write_set_timeout(struct bufferevent *bev, const struct timeval *tv);

/* The write callback (bufferevent_data_cb) of a connection set up by
 * conn_write_enable: disables writing once the output is empty. arg is
 * unused. */
void conn_write_drained(struct bufferevent *bev, void *arg);

#endif
