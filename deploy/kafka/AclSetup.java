// Creates ACL bindings through Kafka's Admin client; run by deploy/kafka_sasl.py as a single-file source
// program (java -cp "<kafka libs>/*" AclSetup.java BOOTSTRAP CLIENT_PROPERTIES BINDINGS_FILE).
// Each line of BINDINGS_FILE: PERMISSION PRINCIPAL OPERATION RESOURCE_TYPE PATTERN_TYPE RESOURCE_NAME,
// e.g. "ALLOW User:data READ TOPIC LITERAL fp.online.replies" (deploy/acls.py writes them).
import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class AclSetup {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[1])) {
            props.load(in);
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        List<AclBinding> bindings = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[2]))) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.trim().split(" ");
            ResourcePattern pattern = new ResourcePattern(
                ResourceType.valueOf(f[3]), f[5], PatternType.valueOf(f[4]));
            AccessControlEntry entry = new AccessControlEntry(
                f[1], "*", AclOperation.valueOf(f[2]), AclPermissionType.valueOf(f[0]));
            bindings.add(new AclBinding(pattern, entry));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(bindings).all().get(60, TimeUnit.SECONDS);
        }
        System.out.println("created " + bindings.size() + " ACL bindings");
    }
}
