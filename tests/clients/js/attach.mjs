// Attach an artifact to an image with @sigstore/oci, as sigstore-js does for attestations.
// Usage: node attach.mjs REGISTRY/REPO TAG ARTIFACT_FILE MEDIA_TYPE
// Prints {"imageDigest": ..., "artifact": <descriptor>} as JSON on stdout.
import { readFileSync } from 'node:fs';
import oci from '@sigstore/oci';

const [imageName, tag, artifactFile, mediaType] = process.argv.slice(2);
if (!mediaType) {
  console.error('usage: node attach.mjs REGISTRY/REPO TAG ARTIFACT_FILE MEDIA_TYPE');
  process.exit(2);
}
// No retries, and a bounded wait for each request; loopback is never proxied.
const fetchOpts = { retry: false, timeout: 30000, noProxy: '127.0.0.1,localhost' };
// The registry has no auth: with credentials its sign-in probe expects 200 or a challenge from
// POST /blobs/uploads/, so pass none (shared/notes/clients.md).
const credentials = undefined;

try {
  const imageDigest = await oci.getImageDigest({ imageName, imageTag: tag, credentials, fetchOpts });
  const artifact = await oci.attachArtifactToImage({
    imageName,
    imageDigest,
    artifact: readFileSync(artifactFile),
    mediaType,
    annotations: { 'org.example.client': 'sigstore-oci' },
    credentials,
    fetchOpts,
  });
  process.stdout.write(JSON.stringify({ imageDigest, artifact }) + '\n');
} catch (err) {
  console.error(err);
  if (err.cause) console.error('cause:', err.cause);
  process.exit(1);
}
