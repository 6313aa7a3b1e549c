"""A TCP relay on loopback between one daemon and a server, that a test can
cut (every connection closed, new ones refused: the port stops listening)
and restore (the same port listens again), to stand for a network that
fails between two machines. Threads: one accepting, two per connection.
"""

import socket
import threading

from lib.harness import free_port


class TcpRelay:

    def __init__(self, target_port, host="127.0.0.1"):
        self.target = (host, target_port)
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns = []      # every socket of the open connections, both sides
        self.accepted = 0    # connections relayed since the start
        self.listener = None
        self.restore()

    def restore(self):
        """Listens again on the same port."""
        with self.lock:
            assert self.listener is None, "the relay is not cut"
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(16)
            self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self):
        """Refuses new connections and ends every open one."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        for c in conns:
            self._end(c)

    close = cut

    @staticmethod
    def _end(s):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                self._end(client)
                continue
            with self.lock:
                if self.listener is not listener:  # cut meanwhile
                    self._end(client)
                    self._end(upstream)
                    return
                self.conns += [client, upstream]
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
