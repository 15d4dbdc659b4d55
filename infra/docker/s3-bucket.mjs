#!/usr/bin/env node
// Creates the compose stack's buckets on its S3 server (the `buckets` service of
// docker-compose.yml: the lake's and the shared state's), through the S3 API with the standard AWS
// settings of the environment, so that it works with any S3-compatible server image. Waits until
// the server answers (it may still be starting), succeeds for a bucket that exists already, and
// exits 1 with one line after 60 s.
//
//   node s3-bucket.mjs BUCKET [BUCKET ...]
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const buckets = process.argv.slice(2);
const endpoint = process.env.AWS_ENDPOINT_URL;
if (buckets.length === 0 || !endpoint) {
  console.error('usage: AWS_ENDPOINT_URL=... node s3-bucket.mjs BUCKET [BUCKET ...]');
  process.exit(2);
}
const client = new S3Client({ endpoint, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' });
const deadline = Date.now() + 60_000;

/** Resolves once the bucket exists; exits 1 past the deadline. */
async function ensureBucket(bucket) {
  for (;;) {
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }));
      console.log(`bucket ${bucket} exists at ${endpoint}`);
      return;
    } catch (err) {
      const status = err?.$metadata?.httpStatusCode;
      if (status === 404) {
        try {
          await client.send(new CreateBucketCommand({ Bucket: bucket }));
          console.log(`created bucket ${bucket} at ${endpoint}`);
          return;
        } catch (e) {
          if (['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes(e?.name)) return;
          if (Date.now() > deadline) {
            console.error(`cannot create bucket ${bucket} at ${endpoint}: ${e?.name ?? e}`);
            process.exit(1);
          }
        }
      } else if (Date.now() > deadline) {
        console.error(`the S3 server at ${endpoint} did not answer within 60 s (${err?.name ?? err?.code ?? err})`);
        process.exit(1);
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

for (const bucket of buckets) await ensureBucket(bucket);
