import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/**
 * The size DynamoDB bills an item at, following "DynamoDB item sizes and formats"
 * (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
 * every attribute costs its name's UTF-8 bytes plus its value's size, where
 *   string: UTF-8 bytes; binary: raw bytes; number: 1 byte per two significant digits + 1;
 *   boolean and null: 1; list and map: 3 bytes + 1 per element + the elements; sets: the sum of their members.
 * The number rule is what the page calls approximate; it is what capacity estimates use.
 */
export function itemSize(item: Record<string, AttributeValue>): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(item)) bytes += utf8(name) + valueSize(value);
  return bytes;
}

/** Write units of one transactional write of an item of this size: two per started kilobyte. */
export const transactionalWriteUnits = (bytes: number) => 2 * Math.max(1, Math.ceil(bytes / 1024));

function valueSize(value: AttributeValue): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  if (value.B !== undefined) return value.B.byteLength;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS !== undefined) return value.SS.reduce((sum, s) => sum + utf8(s), 0);
  if (value.NS !== undefined) return value.NS.reduce((sum, n) => sum + numberSize(n), 0);
  if (value.BS !== undefined) return value.BS.reduce((sum, b) => sum + b.byteLength, 0);
  if (value.L !== undefined) return 3 + value.L.reduce((sum, element) => sum + 1 + valueSize(element), 0);
  if (value.M !== undefined) return 3 + Object.entries(value.M).reduce((sum, [name, element]) => sum + 1 + utf8(name) + valueSize(element), 0);
  return 0;
}

/** Leading and trailing zeros are not stored, nor are the sign, the point or an exponent. */
function numberSize(text: string): number {
  const [mantissa = ''] = text.toLowerCase().split('e');
  const digits = mantissa
    .replace(/[^0-9]/g, '')
    .replace(/^0+/, '')
    .replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

const utf8 = (text: string) => Buffer.byteLength(text, 'utf8');
