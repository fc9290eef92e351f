/**
 * Stands in for LocalStack's ddb-local-loader agent jar, which its installer downloads on first use
 * (a javassist patch that lifts DynamoDB Local's limit of 20 GSIs per table). LocalStack always
 * starts DynamoDB Local with -javaagent:<that jar>; this project needs no such patch, and nothing
 * may be downloaded at run time, so a Java agent that does nothing fills the slot.
 */
public final class NoopAgent {
  public static void premain(String args, java.lang.instrument.Instrumentation instrumentation) {}
}
