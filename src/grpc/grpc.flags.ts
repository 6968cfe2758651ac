// Flags of the gRPC listener (gRPC, gRPC-Web and Connect on one port): where it listens,
// whether it speaks TLS, how many calls a connection may carry at once and how large a
// message may be.
import { existsSync } from 'node:fs';
import {
  bool,
  check,
  type FlagValues,
  int,
  listenAddress,
  listenAddressRule,
  text,
  when,
} from '../platform/flags.ts';

export const grpcFlags = {
  'grpc-addr': text({
    default: 'localhost:4001',
    help: '`host:port` of the gRPC, gRPC-Web and Connect listener (HTTP/2 cleartext, or TLS with `-grpc-tls-cert`; `:4001` = every interface, port `0` picks one); empty turns it off',
    rule: listenAddressRule(),
  }),
  'grpc-tls-cert': text({
    default: '',
    help: 'PEM certificate (chain) file: the gRPC listener speaks TLS, offering HTTP/2 and HTTP/1.1 (gRPC-Web, Connect) by ALPN; needs `-grpc-tls-key`',
  }),
  'grpc-tls-key': text({ default: '', help: 'PEM private key file of `-grpc-tls-cert`' }),
  'grpc-http1': bool({
    default: 'true',
    help: 'cleartext: also take HTTP/1.1 (Connect and gRPC-Web from curl and browsers) on the gRPC port, told apart by the first bytes; `false`: HTTP/2 only',
  }),
  'grpc-max-streams': int({
    default: '250',
    help: "calls (HTTP/2 streams) one connection may have open at once, as SETTINGS_MAX_CONCURRENT_STREAMS tells the client (250: Go's HTTP/2 server's default); clients wait for a free one",
    rule: when((n) => n >= 1 && n <= 100_000, 'must be between 1 and 100000'),
  }),
  'grpc-max-message': int({
    default: '4194304',
    help: 'largest request message in bytes (after decompression); a larger one is RESOURCE_EXHAUSTED',
    rule: when((n) => n >= 1024 && n <= 64 * 1024 * 1024, 'must be between 1024 and 67108864'),
  }),
};

export function grpcConfig(v: FlagValues<typeof grpcFlags>) {
  const cert = v['grpc-tls-cert'];
  const key = v['grpc-tls-key'];
  check((cert === '') === (key === ''), 'grpc-tls-cert', 'and -grpc-tls-key must be given together');
  for (const [flag, file] of [
    ['grpc-tls-cert', cert],
    ['grpc-tls-key', key],
  ] as const) {
    check(file === '' || existsSync(file), flag, `no such file: ${file}`);
  }
  return Object.freeze({
    // null: no gRPC listener
    listen: listenAddress(v['grpc-addr']),
    tls: cert === '' ? null : Object.freeze({ certFile: cert, keyFile: key }),
    http1: v['grpc-http1'],
    maxMessageBytes: v['grpc-max-message'],
    maxStreams: v['grpc-max-streams'],
  });
}

export type GrpcConfig = ReturnType<typeof grpcConfig>;
