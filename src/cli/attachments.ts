/**
 * `send --attach FILE`: the file's name (never its path), a content type
 * guessed from the extension with a small table, and the bytes as base64, as
 * the emails route takes them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CliError, EXIT } from './exit.js';

/** Extensions responders attach during an incident; anything else is application/octet-stream. */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '7z': 'application/x-7z-compressed',
  csv: 'text/csv',
  doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  eml: 'message/rfc822',
  gif: 'image/gif',
  gz: 'application/gzip',
  htm: 'text/html',
  html: 'text/html',
  jpeg: 'image/jpeg',
  jpg: 'image/jpeg',
  json: 'application/json',
  log: 'text/plain',
  md: 'text/markdown',
  pcap: 'application/vnd.tcpdump.pcap',
  pdf: 'application/pdf',
  png: 'image/png',
  ppt: 'application/vnd.ms-powerpoint',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  tar: 'application/x-tar',
  txt: 'text/plain',
  xls: 'application/vnd.ms-excel',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  xml: 'application/xml',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  zip: 'application/zip',
};

/** The content type for a file name, by its extension (case-insensitive). */
export function contentTypeFor(filename: string): string {
  const ext = path.extname(filename).slice(1).toLowerCase();
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

/** Attachments are sent inside one JSON request; past this the CLI stops rather than exhaust memory. */
export const MAX_ATTACHMENT_BYTES = 256 * 1024 * 1024;

/** One attachment as the emails route takes it. */
export interface AttachmentInput {
  filename: string;
  contentType: string;
  content: string;
}

/** Reads the files named by --attach; refuses a missing file, a directory, or more than MAX_ATTACHMENT_BYTES in all. */
export function readAttachments(files: string[]): AttachmentInput[] {
  let total = 0;
  return files.map((file) => {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch (err) {
      throw new CliError('attachment', `Cannot read --attach ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure);
    }
    if (!stat.isFile()) throw new CliError('attachment', `--attach ${file} is not a regular file.`, EXIT.failure);
    total += stat.size;
    if (total > MAX_ATTACHMENT_BYTES) {
      throw new CliError('attachment', `The attachments add up to more than ${MAX_ATTACHMENT_BYTES} bytes; nothing was sent.`, EXIT.failure, 'send fewer or smaller files, or share them another way');
    }
    const filename = path.basename(file);
    return { filename, contentType: contentTypeFor(filename), content: fs.readFileSync(file).toString('base64') };
  });
}
