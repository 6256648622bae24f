import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildApp, type UsagePipelineApp } from '../../bin/app';
import { CONTENT_SECURITY_POLICY } from '../../dashboard/site';

/** The dashboard's stack: private bucket behind CloudFront with OAC, /v1/* passed to the HTTP API uncached. */

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url));
const cdkJson = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> };
/** AWS managed policies, by their fixed ids. */
const CACHING_DISABLED = '4135ea2d-6df8-44a3-9df3-4b5a84be39ad';
const ALL_VIEWER_EXCEPT_HOST_HEADER = 'b689b0a8-53d0-40ab-baf2-68738e2966ac';

interface Behavior {
  PathPattern?: string;
  TargetOriginId: string;
  ViewerProtocolPolicy: string;
  CachePolicyId: string;
  OriginRequestPolicyId?: string;
  AllowedMethods?: string[];
  ResponseHeadersPolicyId?: unknown;
  FunctionAssociations?: { EventType: string; FunctionARN: unknown }[];
}
interface Origin {
  Id: string;
  DomainName: unknown;
  OriginAccessControlId?: unknown;
  S3OriginConfig?: { OriginAccessIdentity: string };
  CustomOriginConfig?: { OriginProtocolPolicy: string };
}
interface DistributionConfig {
  DefaultRootObject: string;
  DefaultCacheBehavior: Behavior;
  CacheBehaviors: Behavior[];
  Origins: Origin[];
  Logging?: { Bucket: unknown };
  CustomErrorResponses?: unknown;
}

let built: UsagePipelineApp;
let template: Template;
let config: DistributionConfig;
let dashboardStack: Stack;

const resources = (type: string) => Object.entries(template.findResources(type)) as [string, { Properties: Record<string, unknown> }][];
const logicalId = (construct: { node: { defaultChild?: unknown } }) => dashboardStack.getLogicalId(construct.node.defaultChild as never);

beforeAll(() => {
  built = buildApp(fixture('config.json'), { context: { ...cdkJson.context, [FAIL_SYNTH_ON_VALIDATION_ERRORS_CONTEXT]: false } });
  dashboardStack = Stack.of(built.dashboard);
  template = Template.fromStack(dashboardStack);
  const [, distribution] = resources('AWS::CloudFront::Distribution')[0] ?? [];
  config = distribution?.Properties.DistributionConfig as DistributionConfig;
});

describe('assets bucket', () => {
  it('is private: public access blocked, encrypted, TLS only, and readable by this distribution alone', () => {
    const bucketId = logicalId(built.dashboard.bucket);
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LoggingConfiguration: Match.objectLike({ DestinationBucketName: { Ref: logicalId(built.dashboard.logsBucket) } }),
    });
    const policy = resources('AWS::S3::BucketPolicy').find(([, p]) => JSON.stringify(p.Properties.Bucket) === JSON.stringify({ Ref: bucketId }));
    const statements = (policy?.[1].Properties.PolicyDocument as { Statement: { Effect: string; Principal: unknown; Action: unknown; Condition?: unknown }[] }).Statement;
    const allows = statements.filter((s) => s.Effect === 'Allow');
    // The only Allow is CloudFront's service principal, for this distribution (OAC's SourceArn condition).
    expect(allows).toHaveLength(1);
    expect(allows[0]).toMatchObject({
      Principal: { Service: 'cloudfront.amazonaws.com' },
      Action: 's3:GetObject',
      Condition: { StringEquals: { 'AWS:SourceArn': expect.anything() } },
    });
    expect(JSON.stringify(allows[0]?.Condition)).toContain(logicalId(built.dashboard.distribution));
    expect(statements.some((s) => s.Effect === 'Deny' && JSON.stringify(s.Condition).includes('"aws:SecureTransport":"false"'))).toBe(true);
    expect(JSON.stringify(statements)).not.toContain('"Principal":"*","Action":"s3:GetObject"');
  });

  it('gets the built page: index.html and hashed assets, the page revalidated, the assets cached for good', () => {
    const deployments = resources('Custom::CDKBucketDeployment').map(([, d]) => d.Properties);
    expect(deployments.map((d) => d.SystemMetadata)).toEqual(expect.arrayContaining([{ 'cache-control': 'public, max-age=31536000, immutable' }, { 'cache-control': 'no-cache' }]));
    // The asset CDK staged is Vite's build of dashboard/.
    const outdir = built.app.synth().directory;
    const staged = readdirSync(outdir).filter((name) => name.startsWith('asset.') && existsSync(join(outdir, name, 'index.html')));
    expect(staged.length).toBeGreaterThan(0);
    const html = readFileSync(join(outdir, staged[0] ?? '', 'index.html'), 'utf8');
    const script = /src="\/(assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script && existsSync(join(outdir, staged[0] ?? '', script))).toBe(true);
  });
});

describe('distribution', () => {
  it('reads the bucket through Origin Access Control (no legacy identity)', () => {
    template.hasResourceProperties('AWS::CloudFront::OriginAccessControl', {
      OriginAccessControlConfig: { OriginAccessControlOriginType: 's3', SigningBehavior: 'always', SigningProtocol: 'sigv4' },
    });
    const s3 = config.Origins.find((o) => o.S3OriginConfig);
    expect(s3?.OriginAccessControlId).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/OriginAccessControl/), 'Id'] });
    expect(s3?.S3OriginConfig?.OriginAccessIdentity).toBe('');
    expect(resources('AWS::CloudFront::CloudFrontOriginAccessIdentity')).toEqual([]);
  });

  it('serves index.html at the root, only over HTTPS, with its logs kept', () => {
    expect(config.DefaultRootObject).toBe('index.html');
    expect(config.DefaultCacheBehavior.ViewerProtocolPolicy).toBe('redirect-to-https');
    expect(config.CacheBehaviors.map((b) => b.ViewerProtocolPolicy)).toEqual(['https-only']);
    expect(config.Logging?.Bucket).toEqual({ 'Fn::GetAtt': [logicalId(built.dashboard.logsBucket), 'RegionalDomainName'] });
    // No distribution-wide error pages: they would replace the API's own 403/404 bodies.
    expect(config.CustomErrorResponses).toBeUndefined();
  });

  it('sends /v1/* to the HTTP API over HTTPS, uncached, with every viewer header but Host (so the key reaches the API)', () => {
    const api = config.CacheBehaviors.find((b) => b.PathPattern === '/v1/*');
    expect(api).toMatchObject({ CachePolicyId: CACHING_DISABLED, OriginRequestPolicyId: ALL_VIEWER_EXCEPT_HOST_HEADER });
    expect(api?.AllowedMethods?.sort()).toEqual(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT']);
    const origin = config.Origins.find((o) => o.Id === api?.TargetOriginId);
    expect(origin?.CustomOriginConfig?.OriginProtocolPolicy).toBe('https-only');
    // The host of the stateless stack's API endpoint, imported across stacks.
    const apiId = Stack.of(built.stateless).getLogicalId(built.stateless.api.node.defaultChild as never);
    expect(JSON.stringify(origin?.DomainName)).toMatch(new RegExp(`"Fn::Select":\\[2,\\{"Fn::Split":\\["/",\\{"Fn::ImportValue":"[^"]*${apiId}`));
  });

  it('adds the security headers to the page and the API', () => {
    template.hasResourceProperties('AWS::CloudFront::ResponseHeadersPolicy', {
      ResponseHeadersPolicyConfig: Match.objectLike({
        SecurityHeadersConfig: {
          ContentSecurityPolicy: { ContentSecurityPolicy: CONTENT_SECURITY_POLICY, Override: true },
          StrictTransportSecurity: Match.objectLike({ AccessControlMaxAgeSec: 63_072_000, IncludeSubdomains: true }),
          ContentTypeOptions: { Override: true },
          FrameOptions: { FrameOption: 'DENY', Override: true },
          ReferrerPolicy: { ReferrerPolicy: 'no-referrer', Override: true },
        },
      }),
    });
    const policies = [config.DefaultCacheBehavior, ...config.CacheBehaviors].map((b) => JSON.stringify(b.ResponseHeadersPolicyId));
    expect(new Set(policies).size).toBe(1);
    expect(policies[0]).toContain('SecurityHeaders');
  });

  it('answers page paths with index.html, and leaves files alone (the viewer-request function, run here)', () => {
    const [, fn] = resources('AWS::CloudFront::Function')[0] ?? [];
    const code = fn?.Properties.FunctionCode as string;
    const handler = new Function(`${code}; return handler;`)() as (event: { request: { uri: string } }) => { uri: string };
    const uri = (path: string) => handler({ request: { uri: path } }).uri;
    expect(['/', '/workspaces/ws_acme', '/finance', '/assets/index-abc.js', '/favicon.ico'].map(uri)).toEqual(['/index.html', '/index.html', '/index.html', '/assets/index-abc.js', '/favicon.ico']);
    expect(config.DefaultCacheBehavior.FunctionAssociations?.map((a) => a.EventType)).toEqual(['viewer-request']);
    expect(config.CacheBehaviors[0]?.FunctionAssociations).toBeUndefined();
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('leaves no unacknowledged finding in the dashboard stack, and no annotation', () => {
    const { violations } = new AwsSolutionsChecks().validateScope(built.app);
    const mine = violations.flatMap((v) => v.violatingResources.filter((r) => (r.constructPath ?? '').startsWith(`${dashboardStack.stackName}/`)).map((r) => `${v.ruleName}: ${r.constructPath}`));
    expect(mine).toEqual([]);
    const annotations = Annotations.fromStack(dashboardStack);
    expect([...annotations.findError('*', Match.anyValue()), ...annotations.findWarning('*', Match.anyValue())].map((m) => String(m.entry.data))).toEqual([]);
  });
});
