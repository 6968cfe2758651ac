// Server reflection (grpc.reflection.v1, and v1alpha, which many tools still call): the
// services served and their file descriptors, as protobuf-es embedded them in gen/, so tools
// (grpcurl, Postman, grpcui) discover the API without the .proto files.
import {
  createRegistry,
  type DescFile,
  type DescService,
  type MessageInitShape,
  toBinary,
} from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ServiceImpl } from '@connectrpc/connect';
import {
  ServerReflection,
  type ServerReflectionRequest,
  type ServerReflectionResponseSchema,
} from '../../gen/grpc/reflection/v1/reflection_pb.ts';
import { ServerReflection as ServerReflectionAlpha } from '../../gen/grpc/reflection/v1alpha/reflection_pb.ts';

// gRPC's NOT_FOUND and INVALID_ARGUMENT, which the protocol's error_response carries as numbers.
const NOT_FOUND = 5;
const INVALID_ARGUMENT = 3;

type Answer = MessageInitShape<typeof ServerReflectionResponseSchema>['messageResponse'];

// Every file a service needs, its imports first.
function filesOf(services: readonly DescService[]): DescFile[] {
  const files: DescFile[] = [];
  const add = (file: DescFile) => {
    if (files.includes(file)) return;
    for (const dependency of file.dependencies) add(dependency);
    files.push(file);
  };
  for (const service of services) add(service.file);
  return files;
}

export function reflectionAnswers(services: readonly DescService[]) {
  const files = filesOf(services);
  const byName = new Map(files.map((file) => [file.proto.name, file]));
  const registry = createRegistry(...files);
  const encoded = new Map(files.map((file) => [file, toBinary(FileDescriptorProtoSchema, file.proto)]));
  // The file and every file it imports, as the protocol expects.
  const withImports = (file: DescFile): Answer => ({
    case: 'fileDescriptorResponse',
    value: { fileDescriptorProto: collect(file).map((f) => encoded.get(f) as Uint8Array) },
  });
  const collect = (file: DescFile): DescFile[] => {
    const all: DescFile[] = [];
    const add = (f: DescFile) => {
      if (all.includes(f)) return;
      all.push(f);
      for (const dependency of f.dependencies) add(dependency);
    };
    add(file);
    return all;
  };
  // A symbol's file: a message, enum or service, or a method or field within one.
  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    for (let name = symbol; name !== ''; name = name.slice(0, Math.max(0, name.lastIndexOf('.')))) {
      const found = registry.get(name);
      if (found) return found.file;
    }
    return undefined;
  };
  const notFound = (message: string): Answer => ({
    case: 'errorResponse',
    value: { errorCode: NOT_FOUND, errorMessage: message },
  });
  return (request: ServerReflectionRequest['messageRequest']): Answer => {
    switch (request.case) {
      case 'listServices':
        return {
          case: 'listServicesResponse',
          value: { service: services.map((service) => ({ name: service.typeName })) },
        };
      case 'fileByFilename': {
        const file = byName.get(request.value);
        return file ? withImports(file) : notFound(`file not found: ${request.value}`);
      }
      case 'fileContainingSymbol': {
        const file = fileOfSymbol(request.value);
        return file ? withImports(file) : notFound(`symbol not found: ${request.value}`);
      }
      case 'allExtensionNumbersOfType':
        return registry.getMessage(request.value)
          ? {
              case: 'allExtensionNumbersResponse',
              value: { baseTypeName: request.value, extensionNumber: [] },
            }
          : notFound(`type not found: ${request.value}`);
      case 'fileContainingExtension':
        return notFound('extensions are not served');
      default:
        // A request that asks nothing (no field of its oneof set), as grpc-go answers it.
        return {
          case: 'errorResponse',
          value: { errorCode: INVALID_ARGUMENT, errorMessage: 'the request names nothing to reflect on' },
        };
    }
  };
}

// The request's field without its message type: v1alpha's requests are echoed in v1alpha's.
function plain(request: ServerReflectionRequest['messageRequest']) {
  if (request.case !== 'fileContainingExtension') return request;
  const { containingType, extensionNumber } = request.value;
  return { case: request.case, value: { containingType, extensionNumber } };
}

// The two versions of the protocol: the same messages under two package names.
export function reflectionServices(services: readonly DescService[]) {
  const all = [...services, ServerReflection, ServerReflectionAlpha];
  const answer = reflectionAnswers(all);
  const impl: ServiceImpl<typeof ServerReflection> = {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield {
          validHost: request.host,
          originalRequest: { host: request.host, messageRequest: plain(request.messageRequest) },
          messageResponse: answer(request.messageRequest),
        };
      }
    },
  };
  return [
    [ServerReflection, impl],
    [ServerReflectionAlpha, impl as unknown as ServiceImpl<typeof ServerReflectionAlpha>],
  ] as const;
}
