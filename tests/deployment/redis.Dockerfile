# Stand-in for compose.yaml's `redis:7`, which no registry serves on the test machine:
# Debian's redis-server on the same base as the proxy's image, started as the official
# image starts it (on every address, protected mode off: the compose network is its fence).
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
ENTRYPOINT ["sh", "-c", "if [ \"$1\" = redis-server ]; then shift; set -- redis-server --protected-mode no --bind '* -::*' \"$@\"; fi; exec \"$@\"", "--"]
CMD ["redis-server"]
