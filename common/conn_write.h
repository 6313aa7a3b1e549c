/* Writing to a client connection with as few system calls as possible.
 *
 * A socket bufferevent writes by arming its write event, waiting for the
 * socket to become writable, writing, and disarming the event once its
 * output is empty: with epoll that is two epoll_ctl calls and a trip
 * through the loop around every write. A daemon that sends small answers
 * and frames to sockets that are almost always writable pays more for that
 * than for the writes themselves.
 *
 * So on a plain socket the write event stays disabled while the output is
 * empty. Whoever queues bytes calls conn_write_flush, which writes them
 * straight to the socket; only what the kernel would not take is left to
 * the bufferevent, whose write event is then enabled until it is written
 * (conn_write_drained, from the write callback, disables it again). A
 * layered (TLS) bufferevent keeps its write event enabled all the time and
 * these calls leave it alone.
 *
 * Ordering is kept: bytes are only ever written from the front of the
 * output, by the bufferevent or by conn_write_flush, never both at once.
 */
#ifndef EVS_CONN_WRITE_H
#define EVS_CONN_WRITE_H

struct bufferevent;

/* Enables a client connection's bufferevent: reading, and writing too
 * when it is layered. Call once, when the connection is set up. */
void conn_write_enable(struct bufferevent *bev);

/* Writes what bev's output holds to its socket now, when bev is a plain
 * socket whose write event is idle; what the kernel does not take (or a
 * write error, which the bufferevent then reports through its event
 * callback) is left to the bufferevent. Call after queuing output. */
void conn_write_flush(struct bufferevent *bev);

/* For the write callback of a connection set up by conn_write_enable:
 * disables the write event of a plain socket once its output is empty. */
void conn_write_drained(struct bufferevent *bev);

#endif
