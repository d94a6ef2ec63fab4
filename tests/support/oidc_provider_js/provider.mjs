// The certified OpenID provider `oidc-provider`, for the console's browser tests.
//
//   node provider.mjs PORT CONSOLE_ORIGIN
//
// Serves http://127.0.0.1:PORT with its development sign-in pages (any login, any password), one
// public client `console` (PKCE) whose callback and post-logout URLs are on CONSOLE_ORIGIN, and
// access tokens as RS256 JWTs for the audience `fulfill-api` carrying the tenant `t1`, which the
// service verifies with the provider's JWKS. Consent is implied (first-party client), so the
// only page a person sees is the password form. Prints "ready" once it listens.
import Provider from 'oidc-provider';

const [port, consoleOrigin] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const API = 'fulfill-api'; // the access token's audience
const RESOURCE = 'urn:fulfill:api'; // resource indicators are absolute URIs
const API_SCOPES = 'intents:read intents:approve executions:read';

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'console',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [`${consoleOrigin}/console/auth/callback`],
      post_logout_redirect_uris: [`${consoleOrigin}/console/`],
    },
  ],
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: API_SCOPES,
        audience: API,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  extraTokenClaims: () => ({ tenant_id: 't1' }),
  // A first-party client: every scope it asks for is granted without a consent page.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    grant.addResourceScope(RESOURCE, API_SCOPES);
    await grant.save();
    return grant;
  },
});

provider.listen(Number(port), '127.0.0.1', () => {
  console.log('ready');
});
