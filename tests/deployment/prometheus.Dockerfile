# Stand-in for compose.yaml's `prom/prometheus`, which no registry serves on the test
# machine: Debian's prometheus, entrypoint and paths as in the official image.
FROM debian:bookworm-slim
RUN apt-get update -q && apt-get install -y -q --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
USER prometheus
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
