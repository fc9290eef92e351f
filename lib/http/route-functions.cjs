// serverless.yml's HTTP functions, one per route of the route table (lib/http/routes.ts): the handler,
// the route, the role's statements by their names in custom.iam, and the memory where it differs.
// serverless resolves the `${self:custom.iam.*}` in what this returns like those written in the YAML.
module.exports = async () => {
  const { ROUTES, functionName } = await import('./routes.ts');
  const functions = {};
  for (const route of Object.values(ROUTES)) {
    const [method, path] = route.route.split(' ');
    functions[functionName(route)] = {
      handler: `${route.handler.slice(0, -'.ts'.length)}.handler`,
      // No statements: the shared role, which may only write logs (tests/integration/package-template.test.ts).
      ...(route.iam.length > 0
        ? { iamRoleStatements: route.iam.map((name) => `\${self:custom.iam.${name}}`) }
        : {}),
      ...(route.memorySize ? { memorySize: route.memorySize } : {}),
      events: [{ httpApi: { method, path } }],
    };
  }
  return functions;
};
