# execd in a container: build on Debian bookworm, run on bookworm-slim with only the
# runtime libraries and the kernels. Listens on 0.0.0.0:44772 inside the container.
#   docker build -t execd .
#   docker run --rm -p 44772:44772 execd
#   docker run --rm --runtime=runsc -p 44772:44772 execd     # under gVisor

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      meson ninja-build pkg-config g++ python3 \
      libcpp-httplib-dev nlohmann-json3-dev libzmq3-dev cppzmq-dev libspdlog-dev doctest-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY meson.build ./
COPY src ./src
COPY tests ./tests
COPY bench ./bench
COPY subprojects ./subprojects
RUN meson setup /build --buildtype=release -Dwerror=true && ninja -C /build execd

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcpp-httplib0.11 libzmq5 libspdlog1.10 libssl3 \
      bash procps ca-certificates tini \
      python3-ipykernel python3-matplotlib python3-numpy python3-pandas nodejs npm \
 && rm -rf /var/lib/apt/lists/*
# JavaScript and TypeScript kernels: tslab from npm, as `make kernels` installs it.
RUN npm install --prefix /opt/tslab --no-audit --no-fund --loglevel=error tslab@1.0.22 @types/node@20 \
 && /opt/tslab/node_modules/.bin/tslab install --python /usr/bin/python3 \
      --binary /opt/tslab/node_modules/.bin/tslab --prefix /usr/local \
 && npm cache clean --force
COPY --from=build /build/execd /usr/local/bin/execd
EXPOSE 44772
# tini reaps orphans re-parented to pid 1 and forwards SIGTERM to execd.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/execd", "--host", "0.0.0.0", "--port", "44772"]
