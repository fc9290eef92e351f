/** The web console, built from web/ when the console function is bundled (scripts/console/). */
declare module 'virtual:console-page' {
  const page: { html: string; scriptHash: string };
  export default page;
}
