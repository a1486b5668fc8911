#!/bin/sh
# Regenerates the Go code of the aggregator's gRPC API.
# Needs protoc (Debian: protobuf-compiler) and the plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
set -eu
cd "$(dirname "$0")"
PATH="$(go env GOPATH)/bin:$PATH"
protoc --proto_path=v1 --go_out=v1 --go_opt=paths=source_relative \
  --go-grpc_out=v1 --go-grpc_opt=paths=source_relative aggregator.proto
